//! The job graph: vertices and edges from a spec, and which vertices chain
//! into one task.

use weir_core::spec::{KeySelector, OperatorKind, OperatorSpec, SinkSpec, SinkType, SourceSpec, Spec, StreamRef};

#[derive(Debug, Clone)]
pub(crate) enum VertexKind {
    Source(SourceSpec),
    Operator(Box<OperatorSpec>),
    Sink(SinkSpec),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Partition {
    /// Subtask `i` to subtask `i`.
    Forward,
    /// By key group.
    Hash(KeySelector),
    /// Round-robin by batch.
    Rebalance,
    /// Round-robin by batch over the upstream subtask's share of the
    /// downstream ones.
    Rescale,
    /// Every batch to every subtask.
    Broadcast,
}

#[derive(Debug, Clone)]
pub(crate) struct Edge {
    pub from: usize,
    pub tag: Option<String>,
    pub partition: Partition,
}

#[derive(Debug, Clone)]
pub(crate) struct Vertex {
    pub id: String,
    pub kind: VertexKind,
    pub parallelism: u32,
    pub inputs: Vec<Edge>,
}

#[derive(Debug, Clone)]
pub(crate) struct JobGraph {
    pub vertices: Vec<Vertex>,
    pub max_parallelism: u32,
    /// The guarantee of its checkpoints, if it takes any (file sinks
    /// commit by it).
    pub checkpoints: Option<weir_core::spec::CheckpointMode>,
    /// Per vertex: its consumers as (consumer, input edge index).
    consumers: Vec<Vec<(usize, usize)>>,
    /// Per vertex: number of logical inputs and the first index of each
    /// input edge.
    layouts: Vec<(usize, Vec<usize>)>,
}

/// A vertex of a spec's job graph, as the control plane shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanVertex {
    /// Its id in the spec.
    pub id: String,
    /// `source`, `operator` or `sink`.
    pub kind: &'static str,
    /// Its parallelism, as the job will run it.
    pub parallelism: u32,
    /// What it reads, as the spec names it (`id` or `id#tag`).
    pub inputs: Vec<String>,
}

/// The vertices of `spec`'s job graph, in the order the job runs and
/// reports them (sources, operators, sinks, each in spec order).
pub fn plan(spec: &Spec) -> Vec<PlanVertex> {
    JobGraph::from_spec(spec)
        .vertices
        .into_iter()
        .map(|v| {
            let (kind, inputs) = match &v.kind {
                VertexKind::Source(_) => ("source", Vec::new()),
                VertexKind::Operator(o) => ("operator", o.input.0.clone()),
                VertexKind::Sink(s) => ("sink", s.input.0.clone()),
            };
            PlanVertex { id: v.id, kind, parallelism: v.parallelism, inputs }
        })
        .collect()
}

impl Vertex {
    /// `source`, `sink`, or the operator's kind as the spec names it.
    pub fn kind_name(&self) -> &'static str {
        match &self.kind {
            VertexKind::Source(_) => "source",
            VertexKind::Sink(_) => "sink",
            VertexKind::Operator(o) => match o.kind {
                OperatorKind::Map => "map",
                OperatorKind::Process => "process",
                OperatorKind::Window => "window",
                OperatorKind::WindowAll => "window-all",
            },
        }
    }
}

impl JobGraph {
    pub fn from_spec(spec: &Spec) -> JobGraph {
        let mut vertices: Vec<Vertex> = Vec::new();
        for s in &spec.sources {
            vertices.push(Vertex {
                id: s.id.clone(),
                kind: VertexKind::Source(s.clone()),
                parallelism: spec.source_parallelism(s),
                inputs: vec![],
            });
        }
        for o in &spec.operators {
            let p = spec.operator_parallelism(o);
            vertices.push(Vertex {
                id: o.id.clone(),
                kind: VertexKind::Operator(Box::new(o.clone())),
                parallelism: p,
                inputs: vec![],
            });
        }
        for s in &spec.sinks {
            let p = match s.sink_type {
                SinkType::Discard => spec.parallelism,
                SinkType::File | SinkType::Stdout => 1,
            };
            vertices.push(Vertex {
                id: s.id.clone(),
                kind: VertexKind::Sink(s.clone()),
                parallelism: p,
                inputs: vec![],
            });
        }
        let index = |id: &str| {
            vertices.iter().position(|v| v.id == id).expect("invariant: validated specs only name known ids")
        };
        let mut all_inputs = Vec::new();
        for (vi, v) in vertices.iter().enumerate() {
            let (names, key_by, explicit) = match &v.kind {
                VertexKind::Source(_) => continue,
                VertexKind::Operator(o) => (&o.input.0, o.key_by.as_deref(), o.partition),
                VertexKind::Sink(s) => (&s.input.0, None, s.partition),
            };
            for name in names {
                let r = StreamRef::parse(name);
                let from = index(&r.id);
                use weir_core::spec::PartitionSpec;
                let partition = match (key_by, explicit) {
                    (Some(k), _) => Partition::Hash(KeySelector::parse(k)),
                    (None, Some(PartitionSpec::Rebalance)) => Partition::Rebalance,
                    (None, Some(PartitionSpec::Rescale)) => Partition::Rescale,
                    (None, Some(PartitionSpec::Broadcast)) => Partition::Broadcast,
                    (None, None) if vertices[from].parallelism == v.parallelism => Partition::Forward,
                    (None, None) => Partition::Rebalance,
                };
                all_inputs.push((vi, Edge { from, tag: r.tag, partition }));
            }
        }
        for (vi, e) in all_inputs {
            vertices[vi].inputs.push(e);
        }
        let mut consumers = vec![Vec::new(); vertices.len()];
        for (ci, c) in vertices.iter().enumerate() {
            for (ei, e) in c.inputs.iter().enumerate() {
                consumers[e.from].push((ci, ei));
            }
        }
        let layouts = vertices
            .iter()
            .map(|v| {
                let mut bases = Vec::new();
                let mut n = 0usize;
                for e in &v.inputs {
                    bases.push(n);
                    n += match e.partition {
                        Partition::Forward => 1,
                        _ => vertices[e.from].parallelism as usize,
                    };
                }
                (n, bases)
            })
            .collect();
        let checkpoints = spec.checkpoints.as_ref().map(|c| c.mode);
        JobGraph { vertices, max_parallelism: spec.max_parallelism, checkpoints, consumers, layouts }
    }

    /// Consumers of `v`: (consumer, input edge index).
    pub fn consumers(&self, v: usize) -> &[(usize, usize)] {
        &self.consumers[v]
    }

    /// Vertices in an order where every vertex comes after its inputs
    /// (Kahn's algorithm: iterative and linear; validated specs are acyclic).
    pub fn topological_order(&self) -> Vec<usize> {
        let mut missing: Vec<usize> = self.vertices.iter().map(|v| v.inputs.len()).collect();
        let mut ready: Vec<usize> = (0..self.vertices.len()).filter(|&v| missing[v] == 0).collect();
        let mut order = Vec::with_capacity(self.vertices.len());
        while let Some(v) = ready.pop() {
            order.push(v);
            for &(c, _) in &self.consumers[v] {
                missing[c] -= 1;
                if missing[c] == 0 {
                    ready.push(c);
                }
            }
        }
        order
    }

    /// Whether `v` runs in the same task as its one upstream vertex: a
    /// forward edge of the main output, and nobody else reads that vertex.
    pub fn chained_to_upstream(&self, v: usize) -> bool {
        let inputs = &self.vertices[v].inputs;
        inputs.len() == 1
            && inputs[0].partition == Partition::Forward
            && inputs[0].tag.is_none()
            && self.consumers(inputs[0].from).len() == 1
    }

    /// Chains: each a list of vertices run by one task per subtask.
    pub fn chains(&self) -> Vec<Vec<usize>> {
        let mut chains = Vec::new();
        for head in 0..self.vertices.len() {
            if self.chained_to_upstream(head) {
                continue;
            }
            let mut chain = vec![head];
            loop {
                let last = *chain.last().expect("invariant: a chain starts with its head");
                let next = self.consumers(last);
                match next {
                    [(c, _)] if self.chained_to_upstream(*c) => chain.push(*c),
                    _ => break,
                }
            }
            chains.push(chain);
        }
        chains
    }

    /// Number of logical inputs (for watermark combination) a subtask of
    /// `v` has, and the first index of each input edge.
    pub fn input_layout(&self, v: usize) -> (usize, &[usize]) {
        (self.layouts[v].0, &self.layouts[v].1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn graph(yaml: &str) -> JobGraph {
        JobGraph::from_spec(&Spec::parse(Path::new("t.yaml"), yaml).unwrap())
    }

    #[test]
    fn forward_edges_of_equal_parallelism_chain_and_key_by_does_not() {
        let g = graph(
            "sources: [{id: s, type: generator}]\n\
             operators:\n\
             - {id: m, kind: map, component: m.wasm, input: s}\n\
             - {id: p, kind: process, component: p.wasm, input: m, key-by: '@key'}\n\
             sinks: [{id: out, type: discard, input: p}]\n",
        );
        assert_eq!(g.chains(), vec![vec![0, 1], vec![2, 3]]);
        assert_eq!(g.vertices[2].inputs[0].partition, Partition::Hash(KeySelector::EventKey));
    }

    #[test]
    fn parallelism_change_rebalances_and_fan_out_breaks_chains() {
        let g = graph(
            "parallelism: 2\n\
             sources: [{id: s, type: generator}]\n\
             operators:\n\
             - {id: m, kind: map, component: m.wasm, input: s}\n\
             sinks:\n\
             - {id: a, type: file, path: a.jsonl, input: m}\n\
             - {id: b, type: discard, input: m}\n",
        );
        assert_eq!(g.chains(), vec![vec![0, 1], vec![2], vec![3]]);
        assert_eq!(g.vertices[2].inputs[0].partition, Partition::Rebalance);
        assert_eq!(g.input_layout(2), (2, &[0][..]));
        assert_eq!(g.input_layout(3), (1, &[0][..]));
    }
}
