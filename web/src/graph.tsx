// The job graph, laid out by dagre: a box per vertex with its parallelism,
// rates, backpressure and watermark; edges from inputs to readers.

import dagre from "@dagrejs/dagre";
import { useMemo } from "react";
import type { VertexInfo } from "./api";
import { rate, watermark } from "./format";

const W = 230;
const H = 92;

interface Props {
  vertices: VertexInfo[];
  selected: string | null;
  onSelect: (id: string) => void;
}

export function JobGraph({ vertices, selected, onSelect }: Props) {
  // Laid out again only when the shape changes, not on every poll.
  const shape = vertices.map((v) => `${v.id}<${v.inputs.join(",")}`).join(";");
  const layout = useMemo(() => {
    const g = new dagre.graphlib.Graph();
    g.setGraph({ rankdir: "LR", nodesep: 30, ranksep: 70, marginx: 10, marginy: 10 });
    g.setDefaultEdgeLabel(() => ({}));
    for (const v of vertices) g.setNode(v.id, { width: W, height: H });
    const edges: { from: string; to: string; tag: string | null }[] = [];
    for (const v of vertices) {
      for (const input of v.inputs) {
        const [from, tag] = input.split("#");
        if (!g.hasNode(from)) continue;
        g.setEdge(from, v.id);
        edges.push({ from, to: v.id, tag: tag ?? null });
      }
    }
    dagre.layout(g);
    const at = new Map(vertices.map((v) => [v.id, g.node(v.id)]));
    const lines = edges.map((e) => ({ ...e, points: g.edge(e.from, e.to)?.points ?? [] }));
    const size = g.graph();
    return { at, lines, width: size.width ?? 0, height: size.height ?? 0 };
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [shape]);

  return (
    <svg
      className="graph"
      role="img"
      aria-label="Job graph"
      viewBox={`0 0 ${layout.width} ${layout.height}`}
      style={{ maxWidth: "100%", width: layout.width, height: "auto" }}
    >
      <defs>
        <marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" orient="auto">
          <path d="M0,0 L10,5 L0,10 z" fill="#667" />
        </marker>
      </defs>
      {layout.lines.map((e) => (
        <g key={`${e.from}-${e.to}-${e.tag}`}>
          <polyline
            points={e.points.map((p: { x: number; y: number }) => `${p.x},${p.y}`).join(" ")}
            fill="none"
            stroke="#667"
            strokeWidth={1.5}
            markerEnd="url(#arrow)"
          />
          {e.tag && e.points.length > 1 && (
            <text className="edge-tag" x={e.points[1].x} y={e.points[1].y - 4}>
              #{e.tag}
            </text>
          )}
        </g>
      ))}
      {vertices.map((v) => {
        const n = layout.at.get(v.id);
        if (!n) return null;
        const x = n.x - W / 2;
        const y = n.y - H / 2;
        return (
          <g
            key={v.id}
            className={`vertex bp-${v.backpressure.toLowerCase()}${selected === v.id ? " selected" : ""}`}
            transform={`translate(${x},${y})`}
            role="button"
            tabIndex={0}
            aria-label={`Vertex ${v.id}`}
            data-vertex={v.id}
            onClick={() => onSelect(v.id)}
            onKeyDown={(e) => (e.key === "Enter" || e.key === " ") && onSelect(v.id)}
          >
            <rect width={W} height={H} rx={6} />
            <text x={10} y={20} className="vertex-title">
              {v.id}
              <tspan className="vertex-kind"> {v.kind} ×{v.parallelism}</tspan>
            </text>
            <text x={10} y={40}>
              in {rate(v.metrics.numRecordsInPerSecond)} · out {rate(v.metrics.numRecordsOutPerSecond)}
            </text>
            <text x={10} y={58}>
              backpressure <tspan className="bp-label">{v.backpressure}</tspan> · busy{" "}
              {(v.metrics.busyTimeMsPerSecond / 10).toFixed(0)}%
            </text>
            <text x={10} y={76} className="vertex-watermark">
              {/* A sink sends nothing on: its input's watermark. */}
              wm{" "}
              {watermark(v.kind === "sink" ? v.metrics.currentInputWatermark : v.metrics.currentOutputWatermark)}
            </text>
          </g>
        );
      })}
    </svg>
  );
}
