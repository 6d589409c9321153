// A time-series chart (uPlot) of samples the page keeps.

import { useEffect, useRef } from "react";
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";

export interface Series {
  label: string;
  color: string;
}

interface Props {
  title: string;
  series: Series[];
  /** x: seconds since the epoch; then one array per series. */
  data: number[][];
  height?: number;
  unit?: string;
}

export function Chart({ title, series, data, height = 180, unit = "" }: Props) {
  const box = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  const labels = series.map((s) => s.label).join("|");

  useEffect(() => {
    const el = box.current;
    if (!el) return;
    const opts: uPlot.Options = {
      title,
      width: Math.max(el.clientWidth, 300),
      height,
      series: [
        {},
        ...series.map((s) => ({
          label: s.label,
          stroke: s.color,
          width: 1.5,
          value: (_u: uPlot, v: number | null) => (v == null ? "–" : `${v.toFixed(1)}${unit}`),
        })),
      ],
      axes: [{}, { size: 60 }],
    };
    const p = new uPlot(opts, data as uPlot.AlignedData, el);
    plot.current = p;
    const resize = new ResizeObserver(() => p.setSize({ width: Math.max(el.clientWidth, 300), height }));
    resize.observe(el);
    return () => {
      resize.disconnect();
      p.destroy();
      plot.current = null;
    };
    // Made again only when the series change.
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [labels, title, height]);

  useEffect(() => {
    plot.current?.setData(data as uPlot.AlignedData);
  }, [data]);

  return <div className="chart" ref={box} role="figure" aria-label={title} />;
}
