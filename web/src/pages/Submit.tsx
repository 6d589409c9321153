import { useEffect, useState } from "react";
import { type BundleInfo, ApiError, post, upload, usePoll } from "../api";
import { bytes, time } from "../format";

interface SpecCheck {
  valid: boolean;
  problems: { line: number | null; column: number | null; message: string }[];
  name: string | null;
  components: { path: string; world: string }[];
}

/** Parallelism, savepoint and the rest, for either kind of submission. */
interface Options {
  parallelism: string;
  fromSavepoint: string;
  allowNonRestored: boolean;
}

function OptionsFields({ value, onChange }: { value: Options; onChange: (o: Options) => void }) {
  return (
    <div className="form-row">
      <label>
        Parallelism{" "}
        <input
          type="number"
          min={1}
          placeholder="the spec's"
          value={value.parallelism}
          onChange={(e) => onChange({ ...value, parallelism: e.target.value })}
        />
      </label>
      <label>
        Resume from savepoint{" "}
        <input
          size={40}
          placeholder="a savepoint folder (optional)"
          value={value.fromSavepoint}
          onChange={(e) => onChange({ ...value, fromSavepoint: e.target.value })}
        />
      </label>
      <label>
        <input
          type="checkbox"
          checked={value.allowNonRestored}
          onChange={(e) => onChange({ ...value, allowNonRestored: e.target.checked })}
        />{" "}
        Allow non-restored state
      </label>
    </div>
  );
}

function request(o: Options) {
  return {
    ...(o.parallelism ? { parallelism: Number(o.parallelism) } : {}),
    ...(o.fromSavepoint.trim() ? { "from-savepoint": o.fromSavepoint.trim() } : {}),
    ...(o.allowNonRestored ? { "allow-non-restored-state": true } : {}),
  };
}

function go(id: string) {
  window.location.hash = `#/jobs/${encodeURIComponent(id)}`;
}

function BundleSubmit({ readOnly }: { readOnly?: boolean }) {
  const bundles = usePoll<{ bundles: BundleInfo[] }>("/v1/bundles", 3000);
  const [over, setOver] = useState(false);
  const [progress, setProgress] = useState<number | null>(null);
  const [chosen, setChosen] = useState<string>("");
  const [error, setError] = useState<string | null>(null);
  const [options, setOptions] = useState<Options>({ parallelism: "", fromSavepoint: "", allowNonRestored: false });

  async function send(file: File) {
    setError(null);
    setProgress(0);
    try {
      const b = await upload<BundleInfo>("/v1/bundles", file, setProgress);
      setChosen(b.id);
    } catch (e) {
      setError((e as Error).message);
    } finally {
      setProgress(null);
    }
  }

  async function submit() {
    setError(null);
    try {
      const s = await post<{ id: string }>("/v1/jobs", { bundle: chosen, ...request(options) });
      go(s.id);
    } catch (e) {
      setError((e as Error).message);
    }
  }

  const list = bundles.data?.bundles ?? [];
  const bundle = list.find((b) => b.id === chosen);
  return (
    <section aria-label="Submit a bundle">
      <h2>Upload a bundle</h2>
      <div
        className={`drop${over ? " over" : ""}`}
        onDragOver={(e) => {
          e.preventDefault();
          setOver(true);
        }}
        onDragLeave={() => setOver(false)}
        onDrop={(e) => {
          e.preventDefault();
          setOver(false);
          const f = e.dataTransfer.files[0];
          if (f && !readOnly) send(f);
        }}
      >
        <p>Drop a <span className="mono">.weir</span> bundle here (made by <span className="mono">weir bundle</span>), or</p>
        <label>
          choose a file{" "}
          <input
            type="file"
            accept=".weir,application/zip"
            aria-label="Bundle file"
            disabled={readOnly}
            onChange={(e) => {
              const f = e.target.files?.[0];
              if (f) send(f);
            }}
          />
        </label>
        {progress !== null && (
          <p>
            <progress value={progress} max={1} aria-label="Upload progress" /> {(progress * 100).toFixed(0)}%
          </p>
        )}
      </div>
      <div className="form-row">
        <label>
          Bundle{" "}
          <select value={chosen} onChange={(e) => setChosen(e.target.value)} aria-label="Bundle to submit">
            <option value="">(choose one)</option>
            {list.map((b) => (
              <option key={b.id} value={b.id}>
                {b.name} {b.version} · {bytes(b.size)} · {time(b["uploaded-at"])}
              </option>
            ))}
          </select>
        </label>
      </div>
      {bundle && (
        <details>
          <summary>Its spec</summary>
          <pre className="mono">{bundle.spec}</pre>
        </details>
      )}
      <OptionsFields value={options} onChange={setOptions} />
      <button type="button" className="primary" disabled={!chosen || readOnly} onClick={submit}>
        Submit bundle
      </button>
      {error && (
        <p className="error" role="alert">
          {error}
        </p>
      )}
    </section>
  );
}

const EXAMPLE = `# Per key, the sum of \`value\` in tumbling windows of 1 s of event time.
name: my-job
sources:
  - {id: events, type: generator, pattern: sequence, keys: 100, count: 1000000, rate: 20000}
operators:
  - id: sums
    kind: window
    input: events
    key-by: "@key"
    window: {type: tumbling, size-ms: 1000}
    function: {type: sum, field: value}
sinks:
  - {id: out, type: discard, input: sums}
`;

function SpecSubmit({ readOnly }: { readOnly?: boolean }) {
  const [text, setText] = useState(EXAMPLE);
  const [check, setCheck] = useState<SpecCheck | null>(null);
  const [files, setFiles] = useState<Record<string, File>>({});
  const [options, setOptions] = useState<Options>({ parallelism: "", fromSavepoint: "", allowNonRestored: false });
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState<string | null>(null);

  // Checked by the coordinator a moment after typing stops; an answer
  // for text that changed since is dropped.
  useEffect(() => {
    let current = true;
    const t = window.setTimeout(async () => {
      try {
        const c = await post<SpecCheck>("/v1/specs/validate", { spec: text });
        if (current) {
          setCheck(c);
          setError(null);
        }
      } catch (e) {
        if (current) setError((e as Error).message);
      }
    }, 400);
    return () => {
      current = false;
      window.clearTimeout(t);
    };
  }, [text]);

  const bad = new Set((check?.problems ?? []).map((p) => p.line).filter((l): l is number => l !== null));
  const lines = text.split("\n").length;
  const missing = (check?.components ?? []).filter((c) => !files[c.path]);

  async function submit() {
    setError(null);
    try {
      const components: Record<string, string> = {};
      for (const c of check?.components ?? []) {
        setBusy(`Uploading ${c.path}…`);
        const u = await upload<{ sha256: string }>("/v1/components", files[c.path], () => {});
        components[c.path] = u.sha256;
      }
      setBusy("Submitting…");
      const s = await post<{ id: string }>("/v1/jobs", { spec: text, components, ...request(options) });
      go(s.id);
    } catch (e) {
      setError(e instanceof ApiError ? e.message : String(e));
    } finally {
      setBusy(null);
    }
  }

  return (
    <section aria-label="Submit a spec">
      <h2>Write a spec</h2>
      <div className="editor">
        <div className="lines" aria-hidden="true">
          {Array.from({ length: lines }, (_, i) => (
            <div key={i} className={bad.has(i + 1) ? "bad" : undefined}>
              {i + 1}
            </div>
          ))}
        </div>
        <textarea
          aria-label="Pipeline spec (YAML)"
          spellCheck={false}
          rows={Math.max(12, lines + 1)}
          value={text}
          onChange={(e) => setText(e.target.value)}
        />
      </div>
      {check && !check.valid && (
        <ul className="problems" aria-label="Spec problems">
          {check.problems.map((p, i) => (
            <li key={i}>
              {p.line !== null ? `line ${p.line}${p.column !== null ? `, column ${p.column}` : ""}: ` : ""}
              {p.message}
            </li>
          ))}
        </ul>
      )}
      {check?.valid && <p role="status">The spec is valid{check.name ? `: job ${check.name}` : ""}.</p>}
      {check?.valid && check.components.length > 0 && (
        <div>
          <p>Its components (.wasm files built for WIT worlds):</p>
          {check.components.map((c) => (
            <div className="form-row" key={c.path}>
              <label>
                <span className="mono">{c.path}</span> ({c.world}){" "}
                <input
                  type="file"
                  accept=".wasm,application/wasm"
                  aria-label={`Component ${c.path}`}
                  onChange={(e) => {
                    const f = e.target.files?.[0];
                    if (f) setFiles((all) => ({ ...all, [c.path]: f }));
                  }}
                />
              </label>
            </div>
          ))}
        </div>
      )}
      <OptionsFields value={options} onChange={setOptions} />
      <button
        type="button"
        className="primary"
        disabled={!check?.valid || missing.length > 0 || readOnly || busy !== null}
        onClick={submit}
      >
        Submit spec
      </button>
      {busy && <p role="status">{busy}</p>}
      {error && (
        <p className="error" role="alert">
          {error}
        </p>
      )}
    </section>
  );
}

export function SubmitPage({ readOnly }: { readOnly?: boolean }) {
  return (
    <>
      <h1>Submit a job</h1>
      {readOnly && (
        <p className="status-message">
          This is a local <span className="mono">weir run</span>: its API is read-only. Submit to{" "}
          <span className="mono">weir coordinator</span>.
        </p>
      )}
      <BundleSubmit readOnly={readOnly} />
      <SpecSubmit readOnly={readOnly} />
    </>
  );
}
