import { useEffect, useRef, useState } from "react";
import {
  type ChannelInfo,
  type JobDetail,
  type RateHistory,
  type Operation,
  type SavepointOperation,
  type VertexInfo,
  TERMINAL,
  get,
  post,
  usePoll,
} from "../api";
import { Chart } from "../chart";
import { count, duration, rate, watermark } from "../format";
import { JobGraph } from "../graph";
import { BackpressureBadge, Confirm, StateBadge } from "../widgets";
import { CheckpointsTab } from "./Checkpoints";
import { ExceptionsTab } from "./Exceptions";
import { StateTab } from "./State";

const TABS = [
  ["graph", "Graph"],
  ["checkpoints", "Checkpoints"],
  ["exceptions", "Exceptions"],
  ["state", "State"],
] as const;

/** Seconds of rates kept per vertex, as the coordinator keeps them. */
const KEEP_SECONDS = 600;

interface History {
  t: number[];
  in: number[];
  out: number[];
  busy: number[];
  back: number[];
}

export function JobPage({ id, tab, readOnly }: { id: string; tab: string; readOnly?: boolean }) {
  const base = `/v1/jobs/${encodeURIComponent(id)}`;
  const job = usePoll<JobDetail>(base);
  const [selected, setSelected] = useState<string | null>(null);
  const history = useRef(new Map<string, History>());
  const [, setSamples] = useState(0);

  // The coordinator's last ten minutes of rates, then what it adds.
  useEffect(() => {
    let stop = false;
    let since = 0;
    let timer: number | undefined;
    const tick = async () => {
      try {
        const r = await get<RateHistory>(`${base}/rates${since ? `?since=${since}` : ""}`);
        if (stop) return;
        const t = r.timestamps.map((ms) => ms / 1000);
        for (const [vertex, rates] of Object.entries(r.vertices)) {
          let h = history.current.get(vertex);
          if (!h) {
            h = { t: [], in: [], out: [], busy: [], back: [] };
            history.current.set(vertex, h);
          }
          h.t.push(...t);
          h.in.push(...rates["records-in-per-second"]);
          h.out.push(...rates["records-out-per-second"]);
          h.busy.push(...rates["busy-time-ms-per-second"]);
          h.back.push(...rates["back-pressured-time-ms-per-second"]);
          const from = h.t.findIndex((x) => x >= Date.now() / 1000 - KEEP_SECONDS);
          if (from > 0) for (const a of Object.values(h)) a.splice(0, from);
        }
        if (r.timestamps.length) {
          since = r.timestamps[r.timestamps.length - 1];
          setSamples((n) => n + 1);
        }
      } catch {
        // The job's own poll shows why; try again.
      }
      if (!stop) timer = window.setTimeout(tick, 1000);
    };
    tick();
    return () => {
      stop = true;
      window.clearTimeout(timer);
    };
  }, [base]);

  const j = job.data;
  if (!j) {
    return job.error ? <p className="error">{job.error.message}</p> : <p>Loading job {id}…</p>;
  }
  const vertex = j.vertices.find((v) => v.id === selected) ?? null;
  return (
    <>
      <div className="job-head">
        <h1>
          {j.name} <StateBadge state={j.state} />
        </h1>
        <Actions job={j} readOnly={readOnly} />
      </div>
      {j["status-message"] && (
        <p className="status-message" title={j["status-message"]}>
          {j["status-message"]}
        </p>
      )}
      <p className="facts">
        <span>id <span className="mono">{j.id}</span></span>
        <span>parallelism {j.parallelism}</span>
        <span>key groups {j["max-parallelism"]}</span>
        <span>slots {j.slots}</span>
        <span>running for {duration(j.duration)}</span>
        <span>restarts {j.restarts}</span>
        {j.bundle && <span>bundle <span className="mono">{j.bundle}</span></span>}
      </p>
      <nav className="tabs" aria-label="Job">
        {TABS.map(([key, label]) => (
          <a
            key={key}
            href={`#/jobs/${encodeURIComponent(id)}/${key}`}
            aria-current={tab === key ? "page" : undefined}
          >
            {label}
          </a>
        ))}
      </nav>
      {tab === "graph" && (
        <>
          <JobGraph vertices={j.vertices} selected={selected} onSelect={setSelected} />
          <p className="hint">Select a vertex for its subtasks and charts.</p>
          {vertex && <VertexPanel vertex={vertex} history={history.current.get(vertex.id)} />}
        </>
      )}
      {tab === "checkpoints" && <CheckpointsTab job={id} />}
      {tab === "exceptions" && <ExceptionsTab job={id} />}
      {tab === "state" && <StateTab job={id} />}
    </>
  );
}

/** A subtask stands out when it holds the vertex's watermark back. */
function lagging(v: VertexInfo): Set<number> {
  const marks = v.subtasks.map((s) => s.metrics.currentInputWatermark);
  const high = Math.max(...marks);
  const out = new Set<number>();
  if (v.subtasks.length < 2) return out;
  for (const s of v.subtasks) {
    const w = s.metrics.currentInputWatermark;
    if (w < high && (w <= -9.2e18 || high - w > 1000)) out.add(s.subtask);
  }
  return out;
}

function VertexPanel({ vertex: v, history: h }: { vertex: VertexInfo; history?: History }) {
  const behind = lagging(v);
  return (
    <section className="panel" aria-label={`Vertex ${v.id} details`}>
      <h2>
        {v.id} <span className="muted">{v.kind}, parallelism {v.parallelism}</span>{" "}
        <BackpressureBadge level={v.backpressure} />
      </h2>
      <p className="facts">
        <span>records in {count(v.metrics.numRecordsIn)}</span>
        <span>records out {count(v.metrics.numRecordsOut)}</span>
        <span>input watermark {watermark(v.metrics.currentInputWatermark)}</span>
        <span>output watermark {watermark(v.metrics.currentOutputWatermark)}</span>
      </p>
      {h && h.t.length > 1 && (
        <div className="charts">
          <Chart
            title="Records per second"
            series={[
              { label: "in", color: "#2b6cb0" },
              { label: "out", color: "#2f855a" },
            ]}
            data={[h.t, h.in, h.out]}
          />
          <Chart
            title="Busy and back-pressured, ms per second"
            series={[
              { label: "busy", color: "#b7791f" },
              { label: "back-pressured", color: "#c53030" },
            ]}
            data={[h.t, h.busy, h.back]}
          />
        </div>
      )}
      <table aria-label={`Subtasks of ${v.id}`}>
        <thead>
          <tr>
            <th>Subtask</th>
            <th>Backpressure</th>
            <th>Busy ms/s</th>
            <th>Idle ms/s</th>
            <th>Back-pressured ms/s</th>
            <th>In/s</th>
            <th>Out/s</th>
            <th>Input watermark</th>
            <th>Slowest channel</th>
            <th>Own metrics</th>
          </tr>
        </thead>
        <tbody>
          {v.subtasks.map((s) => (
            <tr key={s.subtask} className={behind.has(s.subtask) ? "lagging" : undefined}>
              <td>{s.subtask}</td>
              <td>
                <BackpressureBadge level={s.backpressure} />
              </td>
              <td>{s.metrics.busyTimeMsPerSecond.toFixed(0)}</td>
              <td>{s.metrics.idleTimeMsPerSecond.toFixed(0)}</td>
              <td>{s.metrics.backPressuredTimeMsPerSecond.toFixed(0)}</td>
              <td>{rate(s.metrics.numRecordsInPerSecond)}</td>
              <td>{rate(s.metrics.numRecordsOutPerSecond)}</td>
              <td>
                {watermark(s.metrics.currentInputWatermark)}
                {behind.has(s.subtask) && <span className="warn"> holds the watermark back</span>}
              </td>
              <td>
                <SlowestChannel channels={s.channels ?? []} />
              </td>
              <td>
                {s["user-metrics"].map((m) => (
                  <div key={m.name}>
                    {m.name} = {count(m.value)}
                  </div>
                ))}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </section>
  );
}

/** The channel that keeps a subtask waiting longest, if any does. */
function SlowestChannel({ channels }: { channels: ChannelInfo[] }) {
  const slowest = channels.reduce<ChannelInfo | undefined>(
    (a, c) => (c.backPressuredTimeMsPerSecond > (a?.backPressuredTimeMsPerSecond ?? 0) ? c : a),
    undefined,
  );
  if (!slowest || slowest.backPressuredTimeMsPerSecond < 1) return <span className="muted">none</span>;
  return (
    <span className={`channel bp-${slowest.backpressure.toLowerCase()}`} title="time waiting for room in this channel">
      → {slowest.to}[{slowest.subtask}] {slowest.backPressuredTimeMsPerSecond.toFixed(0)} ms/s
      {slowest.remote ? " (other worker)" : ""}
    </span>
  );
}

type Pending = { kind: "cancel" | "savepoint" | "stop" | "rescale"; parallelism?: number };

/** Cancel, savepoint, stop with a savepoint, rescale: asked, then followed. */
function Actions({ job, readOnly }: { job: JobDetail; readOnly?: boolean }) {
  const base = `/v1/jobs/${encodeURIComponent(job.id)}`;
  const [asking, setAsking] = useState<Pending | null>(null);
  const [progress, setProgress] = useState<string | null>(null);
  const [failure, setFailure] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const [parallelism, setParallelism] = useState(String(job.parallelism));
  // Operations stop being followed once the page goes.
  const alive = useRef(true);
  useEffect(() => {
    alive.current = true;
    return () => {
      alive.current = false;
    };
  }, []);
  const ended = TERMINAL.includes(job.state);
  const running = job.state === "RUNNING";
  const wanted = Number(parallelism);
  const validParallelism = Number.isInteger(wanted) && wanted >= 1 && wanted <= job["max-parallelism"];

  /** Polls `path` until the operation completes (five minutes at most). */
  async function follow<T extends Operation>(path: string): Promise<T> {
    const deadline = Date.now() + 300_000;
    while (alive.current && Date.now() < deadline) {
      const op = await get<T>(path);
      if (op.status === "COMPLETED") return op;
      await new Promise((r) => setTimeout(r, 500));
    }
    throw new Error(alive.current ? "not completed within five minutes: see the job's exceptions" : "left the page");
  }

  async function savepoint(stop: boolean): Promise<string> {
    const t = await post<{ "request-id": string }>(`${base}/savepoints`, { stop });
    const op = await follow<SavepointOperation>(`${base}/savepoints/${t["request-id"]}`);
    if (op["failure-cause"] || !op.location) throw new Error(op["failure-cause"] ?? "the savepoint has no folder");
    return op.location;
  }

  /** Waits until the job has ended (the slots of a stopped job are free). */
  async function ended_(): Promise<void> {
    const deadline = Date.now() + 120_000;
    while (alive.current && Date.now() < deadline) {
      const j = await get<JobDetail>(base);
      if (TERMINAL.includes(j.state)) return;
      await new Promise((r) => setTimeout(r, 300));
    }
    throw new Error("the job did not end within two minutes");
  }

  async function act(p: Pending) {
    setFailure(null);
    setBusy(true);
    let folder: string | null = null;
    try {
      if (p.kind === "cancel") {
        setProgress("Cancelling…");
        const t = await post<{ "request-id": string }>(`${base}/cancel`, {});
        const op = await follow<Operation>(`${base}/cancel/${t["request-id"]}`);
        setProgress(`Cancelled: the job is ${op["job-state"]}.`);
      } else if (p.kind === "savepoint" || p.kind === "stop") {
        setProgress(p.kind === "stop" ? "Stopping with a savepoint…" : "Taking a savepoint…");
        const at = await savepoint(p.kind === "stop");
        setProgress(`Savepoint completed: ${at}`);
      } else {
        setProgress(`Rescaling to ${p.parallelism}: stopping with a savepoint…`);
        folder = await savepoint(true);
        setProgress(`Rescaling to ${p.parallelism}: waiting for the job to stop…`);
        await ended_();
        setProgress(`Rescaling to ${p.parallelism}: starting from ${folder}…`);
        const s = await post<{ id: string }>("/v1/jobs", {
          bundle: job.bundle,
          name: job.name,
          parallelism: p.parallelism,
          "from-savepoint": folder,
        });
        setProgress(`Rescaled: the new job runs from ${folder}.`);
        if (alive.current) window.location.hash = `#/jobs/${encodeURIComponent(s.id)}`;
      }
    } catch (e) {
      setProgress(null);
      const saved = folder ? ` The job stopped with a savepoint at ${folder}: resubmit from it.` : "";
      setFailure(`${(e as Error).message}${saved}`);
    } finally {
      setBusy(false);
    }
  }

  const why = readOnly ? "This API is read-only (a local `weir run`): actions need `weir coordinator`." : undefined;
  return (
    <div className="actions">
      <button
        type="button"
        disabled={ended || readOnly || busy}
        title={why}
        onClick={() => setAsking({ kind: "cancel" })}
      >
        Cancel job
      </button>
      <button
        type="button"
        disabled={!running || readOnly || busy}
        title={why}
        onClick={() => setAsking({ kind: "savepoint" })}
      >
        Trigger savepoint
      </button>
      <button
        type="button"
        disabled={!running || readOnly || busy}
        title={why}
        onClick={() => setAsking({ kind: "stop" })}
      >
        Stop with savepoint
      </button>
      <label>
        Parallelism{" "}
        <input
          type="number"
          min={1}
          max={job["max-parallelism"]}
          step={1}
          value={parallelism}
          aria-label="New parallelism"
          aria-invalid={!validParallelism}
          onChange={(e) => setParallelism(e.target.value)}
        />
      </label>
      <button
        type="button"
        disabled={!running || readOnly || busy || !job.bundle || !validParallelism}
        title={
          why ??
          (!job.bundle
            ? "Only a job submitted from a bundle can be rescaled here"
            : !validParallelism
              ? `A whole number from 1 to ${job["max-parallelism"]}`
              : undefined)
        }
        onClick={() => setAsking({ kind: "rescale", parallelism: wanted })}
      >
        Rescale
      </button>
      {progress && (
        <p className="progress" role="status">
          {progress}
        </p>
      )}
      {failure && (
        <p className="error" role="alert">
          {failure}
        </p>
      )}
      <Confirm
        open={asking !== null}
        title={
          asking?.kind === "cancel"
            ? "Cancel this job?"
            : asking?.kind === "savepoint"
              ? "Take a savepoint?"
              : asking?.kind === "stop"
                ? "Stop with a savepoint?"
                : "Rescale this job?"
        }
        confirm={
          asking?.kind === "cancel"
            ? "Cancel job"
            : asking?.kind === "savepoint"
              ? "Take savepoint"
              : asking?.kind === "stop"
                ? "Stop job"
                : "Rescale"
        }
        onConfirm={() => asking && act(asking)}
        onClose={() => setAsking(null)}
      >
        {asking?.kind === "cancel" && <p>The job stops without a savepoint. Its last checkpoints are kept.</p>}
        {asking?.kind === "savepoint" && <p>The job goes on; the savepoint's folder is shown once it is written.</p>}
        {asking?.kind === "stop" && <p>The job stops once the savepoint is written; resume from it later.</p>}
        {asking?.kind === "rescale" && (
          <p>
            The job stops with a savepoint, and a new job starts from it at parallelism {asking.parallelism}.
          </p>
        )}
      </Confirm>
    </div>
  );
}
