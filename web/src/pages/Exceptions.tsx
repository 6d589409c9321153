import { type ExceptionInfo, type Exceptions, usePoll } from "../api";
import { time } from "../format";

function One({ e, root }: { e: ExceptionInfo; root?: boolean }) {
  return (
    <article className={`exception${root ? " root" : ""}`} aria-label={root ? "Root cause" : "Exception"}>
      <header>
        <strong>{e.kind}</strong> <span className="mono">{e.operator}</span>, subtask {e.subtask} ·{" "}
        {time(e.timestamp)}
      </header>
      {e.record && (
        <p>
          record: <span className="mono">{e.record}</span>
        </p>
      )}
      <pre>{e.exception}</pre>
    </article>
  );
}

export function ExceptionsTab({ job }: { job: string }) {
  const ex = usePoll<Exceptions>(`/v1/jobs/${encodeURIComponent(job)}/exceptions`, 2000);
  const x = ex.data;
  if (!x) return ex.error ? <p className="error">{ex.error.message}</p> : <p>Loading exceptions…</p>;
  if (!x["root-exception"]) return <p>No failures.</p>;
  return (
    <section aria-label="Exceptions">
      <h2>Root cause</h2>
      <One e={x["root-exception"]} root />
      <h2>History</h2>
      {[...x["exception-history"]].reverse().map((e, i) => (
        <One key={i} e={e} />
      ))}
    </section>
  );
}
