import { useState } from "react";
import { type CheckpointDetail, type Checkpoints, usePoll } from "../api";
import { Chart } from "../chart";
import { bytes, duration, time } from "../format";

export function CheckpointsTab({ job }: { job: string }) {
  const base = `/v1/jobs/${encodeURIComponent(job)}/checkpoints`;
  const cps = usePoll<Checkpoints>(base);
  const [open, setOpen] = useState<number | null>(null);
  const c = cps.data;
  if (!c) return cps.error ? <p className="error">{cps.error.message}</p> : <p>Loading checkpoints…</p>;
  const done = c.history.filter((h) => h.status === "COMPLETED");
  const savepoints = c.history.filter((h) => h["is-savepoint"]);
  const t = done.map((h) => h["trigger-timestamp"] / 1000);
  return (
    <section aria-label="Checkpoints">
      <section className="cards" aria-label="Checkpoint counts">
        <div className="card">
          <div className="big">{c.counts.completed}</div>
          completed
        </div>
        <div className="card">
          <div className="big">{c.counts["in-progress"]}</div>
          in progress
        </div>
        <div className="card">
          <div className="big">{c.counts.failed}</div>
          failed
        </div>
        {c["latest-completed"] && (
          <div className="card">
            <div className="big">#{c["latest-completed"].id}</div>
            latest: {duration(c["latest-completed"]["end-to-end-duration"])},{" "}
            {bytes(c["latest-completed"]["state-size"])}
          </div>
        )}
      </section>
      {done.length > 1 && (
        <div className="charts">
          <Chart
            title="Duration and alignment, ms"
            series={[
              { label: "end to end", color: "#2b6cb0" },
              { label: "alignment", color: "#c53030" },
            ]}
            data={[t, done.map((h) => h["end-to-end-duration"]), done.map((h) => h["alignment-duration"])]}
          />
          <Chart
            title="Size, KiB"
            series={[{ label: "written", color: "#2f855a" }]}
            data={[t, done.map((h) => h["state-size"] / 1024)]}
          />
        </div>
      )}
      <h2>Savepoints</h2>
      {savepoints.length === 0 ? (
        <p>None in this run yet.</p>
      ) : (
        <ul aria-label="Savepoints">
          {savepoints.map((s) => (
            <li key={s.id}>
              #{s.id} {s.status.toLowerCase()} at {time(s["trigger-timestamp"])}:{" "}
              <span className="mono">{s["external-path"]}</span>
              {s["failure-message"] && <span className="error"> {s["failure-message"]}</span>}
            </li>
          ))}
        </ul>
      )}
      <h2>History</h2>
      <table aria-label="Checkpoint history">
        <thead>
          <tr>
            <th>#</th>
            <th>Status</th>
            <th>Kind</th>
            <th>Triggered</th>
            <th>Duration</th>
            <th>Size</th>
            <th>Alignment</th>
            <th>In flight</th>
            <th>Acknowledged</th>
            <th></th>
          </tr>
        </thead>
        <tbody>
          {[...c.history].reverse().map((h) => (
            <tr key={h.id} className={h.status === "FAILED" ? "failed" : undefined}>
              <td>{h.id}</td>
              <td title={h["failure-message"] ?? undefined}>{h.status}</td>
              <td>{h["is-savepoint"] ? "savepoint" : "checkpoint"}</td>
              <td>{time(h["trigger-timestamp"])}</td>
              <td>{duration(h["end-to-end-duration"])}</td>
              <td>{bytes(h["state-size"])}</td>
              <td>{duration(h["alignment-duration"])}</td>
              <td>{bytes(h["persisted-data"])}</td>
              <td>
                {h["num-acknowledged-subtasks"]} / {h["num-subtasks"]}
              </td>
              <td>
                <button
                  type="button"
                  aria-label={`Details of checkpoint ${h.id}`}
                  aria-expanded={open === h.id}
                  onClick={() => setOpen(open === h.id ? null : h.id)}
                >
                  {open === h.id ? "Hide" : "Details"}
                </button>
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      {open !== null && <Detail path={`${base}/${open}`} />}
    </section>
  );
}

function Detail({ path }: { path: string }) {
  const d = usePoll<CheckpointDetail>(path, 2000);
  if (!d.data) return d.error ? <p className="error">{d.error.message}</p> : <p>Loading…</p>;
  const c = d.data.checkpoint;
  return (
    <section className="panel" aria-label={`Checkpoint ${c.id} per subtask`}>
      <h2>
        Checkpoint {c.id} per subtask <span className="muted">{c.status.toLowerCase()}</span>
      </h2>
      {c["failure-message"] && <p className="error">{c["failure-message"]}</p>}
      <table>
        <thead>
          <tr>
            <th>Operators</th>
            <th>Subtask</th>
            <th>Acknowledged after</th>
            <th>Barrier after</th>
            <th>Alignment</th>
            <th>Sync snapshot</th>
            <th>Size</th>
            <th>In flight</th>
            <th></th>
          </tr>
        </thead>
        <tbody>
          {d.data.tasks.map((t) => (
            <tr key={`${t.vertices.join("-")}-${t.subtask}`}>
              <td>{t.vertices.join(" → ")}</td>
              <td>{t.subtask}</td>
              <td>{duration(t["end-to-end-duration"])}</td>
              <td>{duration(t["start-delay"])}</td>
              <td>{duration(t["alignment-duration"])}</td>
              <td>{(t["sync-duration-us"] / 1000).toFixed(2)} ms</td>
              <td>{bytes(t["state-size"])}</td>
              <td>{bytes(t["persisted-data"])}</td>
              <td>{t.finished ? "finished (final snapshot)" : t.unaligned ? "unaligned" : ""}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </section>
  );
}
