import { type JobInfo, type Overview, type Polled, type WorkerInfo, usePoll } from "../api";
import { duration, time } from "../format";
import { StateBadge } from "../widgets";

export function OverviewPage({ overview }: { overview: Polled<Overview> }) {
  const jobs = usePoll<{ jobs: JobInfo[] }>("/v1/jobs");
  const workers = usePoll<{ workers: WorkerInfo[] }>("/v1/workers", 2000);
  const o = overview.data;
  return (
    <>
      <h1>Overview</h1>
      {overview.error && <p className="error">{overview.error.message}</p>}
      <section className="cards" aria-label="Cluster">
        <div className="card">
          <div className="big">{o ? o.workers : "…"}</div>
          workers
        </div>
        <div className="card">
          <div className="big">{o ? `${o["slots-available"]} / ${o["slots-total"]}` : "…"}</div>
          free slots
        </div>
        {o &&
          Object.entries(o.jobs).map(([state, n]) => (
            <div className="card" key={state}>
              <div className="big">{n}</div>
              {state.toLowerCase()}
            </div>
          ))}
        <div className="card">
          <div className="big">{o ? o.bundles : "…"}</div>
          bundles
        </div>
      </section>

      <h2>Jobs</h2>
      {jobs.data && jobs.data.jobs.length === 0 && (
        <p>
          No jobs yet: <a href="#/submit">submit one</a>.
        </p>
      )}
      {jobs.data && jobs.data.jobs.length > 0 && (
        <table aria-label="Jobs">
          <thead>
            <tr>
              <th>Name</th>
              <th>State</th>
              <th>Started</th>
              <th>Duration</th>
              <th>Id</th>
            </tr>
          </thead>
          <tbody>
            {jobs.data.jobs.map((j) => (
              <tr key={j.id}>
                <td>
                  <a href={`#/jobs/${encodeURIComponent(j.id)}`}>{j.name}</a>
                </td>
                <td>
                  <StateBadge state={j.state} />
                </td>
                <td>{time(j["start-time"])}</td>
                <td>{duration(j.duration)}</td>
                <td className="mono">{j.id}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}

      <h2>Workers</h2>
      {workers.data && (
        <table aria-label="Workers">
          <thead>
            <tr>
              <th>Worker</th>
              <th>Address</th>
              <th>Slots</th>
              <th>Free</th>
              <th>Jobs</th>
            </tr>
          </thead>
          <tbody>
            {workers.data.workers.map((w) => (
              <tr key={w.id}>
                <td className="mono">{w.id}</td>
                <td>{w.address}</td>
                <td>{w["slots-total"]}</td>
                <td>{w["slots-free"]}</td>
                <td>{w.jobs.length}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </>
  );
}
