import { StrictMode, useEffect, useState } from "react";
import { createRoot } from "react-dom/client";
import { type Overview, setToken, token, usePoll } from "./api";
import { OverviewPage } from "./pages/Overview";
import { JobPage } from "./pages/Job";
import { SubmitPage } from "./pages/Submit";
import "./style.css";

/** The part of the address after `#`, split at slashes. */
function useRoute(): string[] {
  const decode = (part: string) => {
    try {
      return decodeURIComponent(part);
    } catch {
      return part;
    }
  };
  const read = () => window.location.hash.replace(/^#\/?/, "").split("/").filter(Boolean).map(decode);
  const [route, setRoute] = useState(read);
  useEffect(() => {
    const on = () => setRoute(read());
    window.addEventListener("hashchange", on);
    return () => window.removeEventListener("hashchange", on);
  }, []);
  return route;
}

function TokenField() {
  const [value, setValue] = useState(token());
  return (
    <form
      className="token"
      onSubmit={(e) => {
        e.preventDefault();
        setToken(value.trim());
      }}
    >
      <label>
        Token{" "}
        <input
          type="password"
          value={value}
          placeholder="only beyond localhost"
          aria-label="API token"
          onChange={(e) => setValue(e.target.value)}
        />
      </label>
      <button type="submit">Save</button>
    </form>
  );
}

function App() {
  const route = useRoute();
  const overview = usePoll<Overview>("/v1/overview", 2000);
  const [page, id, tab] = route;
  let body;
  // Keyed by the job: another job starts with fresh charts and actions.
  if (page === "jobs" && id)
    body = <JobPage key={id} id={id} tab={tab ?? "graph"} readOnly={overview.data?.["read-only"]} />;
  else if (page === "submit") body = <SubmitPage readOnly={overview.data?.["read-only"]} />;
  else body = <OverviewPage overview={overview} />;
  return (
    <>
      <header className="top">
        <a className="brand" href="#/">
          Weir
        </a>
        <nav aria-label="Main">
          <a href="#/" aria-current={!page ? "page" : undefined}>
            Overview
          </a>
          <a href="#/submit" aria-current={page === "submit" ? "page" : undefined}>
            Submit
          </a>
        </nav>
        <span className="version">
          {overview.data ? `v${overview.data.version} · WIT ${overview.data.wit}` : ""}
          {overview.error ? <span className="offline"> coordinator unreachable</span> : null}
        </span>
        <TokenField />
      </header>
      <main>{body}</main>
    </>
  );
}

createRoot(document.getElementById("root")!).render(
  <StrictMode>
    <App />
  </StrictMode>,
);
