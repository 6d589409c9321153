import { useState } from "react";
import { ApiError, get, usePoll } from "../api";
import { bytes, count, time } from "../format";

interface NamedState {
  name: string;
  keys: number;
  "keys-per-group": Record<string, number>;
}

interface ListState {
  name: string;
  union: boolean;
  elements: Record<string, string[]>;
}

interface OperatorStateInfo {
  id: string;
  kind: string;
  parallelism: number;
  bytes: number;
  states: NamedState[];
  lists: ListState[];
  "in-flight": number;
}

interface JobStateInfo {
  checkpoint: number;
  path: string;
  "completed-at": number;
  "max-parallelism": number;
  operators: OperatorStateInfo[];
}

interface KeyStateInfo {
  "key-group": number;
  states: Record<string, string[]>;
}

/** Keys per key group as a strip, one cell per group, darker for more. */
function Groups({ perGroup, groups }: { perGroup: Record<string, number>; groups: number }) {
  const counts = Array.from({ length: groups }, (_, g) => perGroup[g] ?? 0);
  const most = Math.max(1, ...counts);
  const w = Math.max(2, Math.min(8, Math.floor(640 / groups)));
  return (
    <svg width={w * groups} height={14} role="img" aria-label="Keys per key group">
      {counts.map((n, g) => (
        <rect key={g} x={g * w} width={w} height={14} fill={n ? `rgba(43,108,176,${0.15 + (0.85 * n) / most})` : "#eee"}>
          <title>
            key group {g}: {n} keys
          </title>
        </rect>
      ))}
    </svg>
  );
}

function Lookup({ job, operator }: { job: string; operator: string }) {
  const [key, setKey] = useState("");
  const [found, setFound] = useState<KeyStateInfo | null>(null);
  const [error, setError] = useState<string | null>(null);
  return (
    <form
      className="lookup"
      onSubmit={async (e) => {
        e.preventDefault();
        setError(null);
        setFound(null);
        try {
          const path = `/v1/jobs/${encodeURIComponent(job)}/state/${encodeURIComponent(operator)}?key=${encodeURIComponent(key)}`;
          setFound(await get<KeyStateInfo>(path));
        } catch (err) {
          setError(err instanceof ApiError ? err.message : String(err));
        }
      }}
    >
      <label>
        Key{" "}
        <input value={key} onChange={(e) => setKey(e.target.value)} aria-label={`Key to look up in ${operator}`} />
      </label>
      <button type="submit" disabled={!key}>
        Look up
      </button>
      {error && <p className="error">{error}</p>}
      {found && (
        <div className="key-state" aria-label={`State of key ${key}`}>
          <p>key group {found["key-group"]}</p>
          {Object.keys(found.states).length === 0 && <p>No state for this key.</p>}
          {Object.entries(found.states).map(([name, entries]) => (
            <div key={name}>
              <strong>{name}</strong>
              <pre>{entries.join("\n")}</pre>
            </div>
          ))}
        </div>
      )}
    </form>
  );
}

export function StateTab({ job }: { job: string }) {
  const st = usePoll<JobStateInfo>(`/v1/jobs/${encodeURIComponent(job)}/state`, 10_000);
  const s = st.data;
  if (!s) return st.error ? <p className="error">{st.error.message}</p> : <p>Loading state…</p>;
  return (
    <section aria-label="State">
      <p>
        As of checkpoint {s.checkpoint} ({time(s["completed-at"])}), <span className="mono">{s.path}</span>
      </p>
      {s.operators.map((o) => (
        <section key={o.id} className="panel" aria-label={`State of ${o.id}`}>
          <h2>
            {o.id} <span className="muted">{o.kind}, parallelism {o.parallelism}, {bytes(o.bytes)}</span>
          </h2>
          {o.states.length === 0 && o.lists.length === 0 && <p>No state.</p>}
          {o.states.length > 0 && (
            <table>
              <thead>
                <tr>
                  <th>State</th>
                  <th>Keys</th>
                  <th>Per key group</th>
                </tr>
              </thead>
              <tbody>
                {o.states.map((n) => (
                  <tr key={n.name}>
                    <td>{n.name}</td>
                    <td>{count(n.keys)}</td>
                    <td>
                      <Groups perGroup={n["keys-per-group"]} groups={s["max-parallelism"]} />
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          )}
          {o.lists.map((l) => (
            <div key={l.name}>
              operator list <strong>{l.name}</strong> ({l.union ? "union" : "even-split"}):
              {Object.entries(l.elements).map(([sub, els]) => (
                <div key={sub} className="mono">
                  subtask {sub}: {els.join(", ")}
                </div>
              ))}
            </div>
          ))}
          {o["in-flight"] > 0 && <p>{count(o["in-flight"])} records in flight</p>}
          {o.states.length > 0 && <Lookup job={job} operator={o.id} />}
        </section>
      ))}
    </section>
  );
}
