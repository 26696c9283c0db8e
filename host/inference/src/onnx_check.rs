//! A bounded look at an uploaded ONNX file before ONNX Runtime sees it.
//!
//! ONNX Runtime's parser is C++ and trusts its input more than we can: a tenant's upload is
//! walked here first, as protobuf wire format, within fixed limits (nesting, fields, nodes), and
//! refused when it is not a model, or when it asks the host for something a tenant must not get.
//! Above all, a tensor may keep its weights in *external data* (a path the runtime opens next to
//! the model): an upload could name any file of the host. Models must be self-contained.
//!
//! Only the fields that matter are read (graphs and where graphs nest: nodes, attributes,
//! functions; tensors and sparse tensors); the rest is skipped by its declared length, which is
//! checked against what is left.

/// Why an upload is not a model the host takes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OnnxRefusal {
    #[error("not an ONNX model: {0}")]
    Malformed(String),
    #[error("the model has no graph")]
    NoGraph,
    #[error(
        "tensor '{0}' keeps its data in an external file; upload a self-contained model (onnx.save(model, path, save_as_external_data=False))"
    )]
    ExternalData(String),
    #[error("the model is over a limit: {0}")]
    TooComplex(String),
}

/// What the walk saw.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OnnxSummary {
    pub ir_version: u64,
    /// Nodes in all graphs (subgraphs and functions included).
    pub nodes: usize,
    /// Operator set imports: (domain, version); "" is the default ONNX domain.
    pub opsets: Vec<(String, u64)>,
}

/// Graphs nested in graphs (an `If` inside a `Loop` inside the main graph is 3), at most.
pub const MAX_GRAPH_DEPTH: usize = 16;
/// Nodes in the whole model, at most.
pub const MAX_NODES: usize = 200_000;
/// Fields read in the whole model (of any kind), at most.
pub const MAX_FIELDS: usize = 4_000_000;

/// Walks `bytes` as an ONNX `ModelProto`.
pub fn check_onnx(bytes: &[u8]) -> Result<OnnxSummary, OnnxRefusal> {
    let mut walk = Walk {
        summary: OnnxSummary::default(),
        fields: 0,
    };
    let mut has_graph = false;
    for field in walk.collect(bytes)? {
        match (field.number, field.value) {
            (1, Value::Varint(v)) => walk.summary.ir_version = v,
            (7, Value::Bytes(graph)) => {
                has_graph = true;
                walk.graph(graph, 1)?;
            }
            (8, Value::Bytes(opset)) => {
                let (mut domain, mut version) = (String::new(), 0);
                for f in walk.collect(opset)? {
                    match (f.number, f.value) {
                        (1, Value::Bytes(d)) => domain = text(d)?,
                        (2, Value::Varint(v)) => version = v,
                        _ => {}
                    }
                }
                walk.summary.opsets.push((domain, version));
            }
            (25, Value::Bytes(function)) => walk.function(function, 1)?,
            _ => {}
        }
    }
    if !has_graph {
        return Err(OnnxRefusal::NoGraph);
    }
    if walk.summary.ir_version == 0 {
        return Err(OnnxRefusal::Malformed("no ir_version".into()));
    }
    Ok(walk.summary)
}

fn text(bytes: &[u8]) -> Result<String, OnnxRefusal> {
    String::from_utf8(bytes.to_vec())
        .map_err(|_| OnnxRefusal::Malformed("a name that is not UTF-8".into()))
}

#[derive(Debug, Clone, Copy)]
enum Value<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed,
}

#[derive(Debug, Clone, Copy)]
struct Field<'a> {
    number: u64,
    value: Value<'a>,
}

struct Walk {
    summary: OnnxSummary,
    fields: usize,
}

/// The fields of one message, in order; an error ends it.
struct Fields<'a, 'w> {
    rest: &'a [u8],
    walk: &'w mut Walk,
    failed: bool,
}

fn varint(rest: &mut &[u8]) -> Result<u64, OnnxRefusal> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, tail) = rest
            .split_first()
            .ok_or_else(|| OnnxRefusal::Malformed("the file ends inside a number".into()))?;
        *rest = tail;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(OnnxRefusal::Malformed(
        "a number longer than 10 bytes".into(),
    ))
}

impl<'a> Fields<'a, '_> {
    fn next_field(&mut self) -> Result<Field<'a>, OnnxRefusal> {
        self.walk.fields += 1;
        if self.walk.fields > MAX_FIELDS {
            return Err(OnnxRefusal::TooComplex(format!(
                "more than {MAX_FIELDS} fields"
            )));
        }
        let key = varint(&mut self.rest)?;
        let number = key >> 3;
        if number == 0 {
            return Err(OnnxRefusal::Malformed("field number 0".into()));
        }
        let value = match key & 7 {
            0 => Value::Varint(varint(&mut self.rest)?),
            1 | 5 => {
                let width = if key & 7 == 1 { 8 } else { 4 };
                if self.rest.len() < width {
                    return Err(OnnxRefusal::Malformed(
                        "the file ends inside a field".into(),
                    ));
                }
                self.rest = &self.rest[width..];
                Value::Fixed
            }
            2 => {
                let len = varint(&mut self.rest)?;
                let len = usize::try_from(len)
                    .ok()
                    .filter(|&l| l <= self.rest.len())
                    .ok_or_else(|| {
                        OnnxRefusal::Malformed(format!(
                            "a field of {len} bytes where {} are left",
                            self.rest.len()
                        ))
                    })?;
                let (value, tail) = self.rest.split_at(len);
                self.rest = tail;
                Value::Bytes(value)
            }
            kind => {
                return Err(OnnxRefusal::Malformed(format!(
                    "field {number} has wire type {kind}, which ONNX does not use"
                )));
            }
        };
        Ok(Field { number, value })
    }
}

impl<'a> Iterator for Fields<'a, '_> {
    type Item = Result<Field<'a>, OnnxRefusal>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() || self.failed {
            return None;
        }
        let field = self.next_field();
        self.failed = field.is_err();
        Some(field)
    }
}

impl Walk {
    fn fields<'a, 'w>(&'w mut self, bytes: &'a [u8]) -> Fields<'a, 'w> {
        Fields {
            rest: bytes,
            walk: self,
            failed: false,
        }
    }

    /// Collects a message's fields first (so the walk can recurse with `self`).
    fn collect<'a>(&mut self, bytes: &'a [u8]) -> Result<Vec<Field<'a>>, OnnxRefusal> {
        self.fields(bytes).collect()
    }

    fn deeper(depth: usize) -> Result<usize, OnnxRefusal> {
        if depth >= MAX_GRAPH_DEPTH {
            return Err(OnnxRefusal::TooComplex(format!(
                "graphs nested more than {MAX_GRAPH_DEPTH} deep"
            )));
        }
        Ok(depth + 1)
    }

    /// GraphProto: node 1, initializer 5, sparse_initializer 15.
    fn graph(&mut self, bytes: &[u8], depth: usize) -> Result<(), OnnxRefusal> {
        for field in self.collect(bytes)? {
            match (field.number, field.value) {
                (1, Value::Bytes(node)) => self.node(node, depth)?,
                (5, Value::Bytes(tensor)) => self.tensor(tensor)?,
                (15, Value::Bytes(sparse)) => self.sparse_tensor(sparse)?,
                _ => {}
            }
        }
        Ok(())
    }

    /// FunctionProto: node 7.
    fn function(&mut self, bytes: &[u8], depth: usize) -> Result<(), OnnxRefusal> {
        for field in self.collect(bytes)? {
            if let (7, Value::Bytes(node)) = (field.number, field.value) {
                self.node(node, depth)?;
            }
        }
        Ok(())
    }

    /// NodeProto: attribute 5.
    fn node(&mut self, bytes: &[u8], depth: usize) -> Result<(), OnnxRefusal> {
        self.summary.nodes += 1;
        if self.summary.nodes > MAX_NODES {
            return Err(OnnxRefusal::TooComplex(format!(
                "more than {MAX_NODES} nodes"
            )));
        }
        for field in self.collect(bytes)? {
            if let (5, Value::Bytes(attribute)) = (field.number, field.value) {
                self.attribute(attribute, depth)?;
            }
        }
        Ok(())
    }

    /// AttributeProto: t 5, g 6, tensors 10, graphs 11, sparse_tensor 22, sparse_tensors 23.
    fn attribute(&mut self, bytes: &[u8], depth: usize) -> Result<(), OnnxRefusal> {
        for field in self.collect(bytes)? {
            match (field.number, field.value) {
                (5 | 10, Value::Bytes(tensor)) => self.tensor(tensor)?,
                (6 | 11, Value::Bytes(graph)) => self.graph(graph, Self::deeper(depth)?)?,
                (22 | 23, Value::Bytes(sparse)) => self.sparse_tensor(sparse)?,
                _ => {}
            }
        }
        Ok(())
    }

    /// SparseTensorProto: values 1, indices 2 (both tensors).
    fn sparse_tensor(&mut self, bytes: &[u8]) -> Result<(), OnnxRefusal> {
        for field in self.collect(bytes)? {
            if let (1 | 2, Value::Bytes(tensor)) = (field.number, field.value) {
                self.tensor(tensor)?;
            }
        }
        Ok(())
    }

    /// TensorProto: name 8, external_data 13, data_location 14 (1 = EXTERNAL).
    fn tensor(&mut self, bytes: &[u8]) -> Result<(), OnnxRefusal> {
        let (mut name, mut external) = (String::new(), false);
        for field in self.fields(bytes) {
            let field = field?;
            match (field.number, field.value) {
                (8, Value::Bytes(n)) => {
                    name = String::from_utf8_lossy(n).chars().take(200).collect()
                }
                (13, Value::Bytes(_)) => external = true,
                (14, Value::Varint(location)) => external |= location == 1,
                _ => {}
            }
        }
        if external {
            return Err(OnnxRefusal::ExternalData(name));
        }
        Ok(())
    }
}

/// Appends `v` as a base-128 varint (LEB128): the encoding of protobuf numbers and lengths that
/// the walk reads, and of WebAssembly's section sizes (for building inputs in tests and benches).
pub fn put_varint(mut v: u64, out: &mut Vec<u8>) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Protobuf encoding, for building test models.
    pub fn key(number: u64, kind: u64, out: &mut Vec<u8>) {
        put_varint((number << 3) | kind, out);
    }

    pub fn message(number: u64, body: &[u8], out: &mut Vec<u8>) {
        key(number, 2, out);
        put_varint(body.len() as u64, out);
        out.extend_from_slice(body);
    }

    pub fn number(number: u64, v: u64, out: &mut Vec<u8>) {
        key(number, 0, out);
        put_varint(v, out);
    }

    /// A model whose graph holds `graph_fields`.
    fn model(graph_fields: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        number(1, 8, &mut out);
        let mut opset = Vec::new();
        number(2, 13, &mut opset);
        message(8, &opset, &mut out);
        message(7, graph_fields, &mut out);
        out
    }

    fn relu_node() -> Vec<u8> {
        let mut node = Vec::new();
        message(1, b"x", &mut node);
        message(2, b"y", &mut node);
        message(4, b"Relu", &mut node);
        let mut graph = Vec::new();
        message(1, &node, &mut graph);
        graph
    }

    #[test]
    fn a_plain_model_is_summarised() {
        let summary = check_onnx(&model(&relu_node())).unwrap();
        assert_eq!(summary.ir_version, 8);
        assert_eq!(summary.nodes, 1);
        assert_eq!(summary.opsets, vec![(String::new(), 13)]);
    }

    #[test]
    fn tensors_with_external_data_are_refused_wherever_they_are() {
        let mut tensor = Vec::new();
        message(8, b"weights", &mut tensor);
        number(14, 1, &mut tensor);
        // In the graph's initializers.
        let mut graph = relu_node();
        message(5, &tensor, &mut graph);
        assert_eq!(
            check_onnx(&model(&graph)),
            Err(OnnxRefusal::ExternalData("weights".into()))
        );
        // In a node attribute of a subgraph (If's then_branch).
        let mut entry = Vec::new();
        message(1, b"location", &mut entry);
        message(2, b"/etc/shadow", &mut entry);
        let mut tensor = Vec::new();
        message(13, &entry, &mut tensor);
        let mut inner = Vec::new();
        message(5, &tensor, &mut inner);
        let mut attribute = Vec::new();
        message(6, &inner, &mut attribute);
        let mut node = Vec::new();
        message(4, b"If", &mut node);
        message(5, &attribute, &mut node);
        let mut graph = Vec::new();
        message(1, &node, &mut graph);
        assert!(matches!(
            check_onnx(&model(&graph)),
            Err(OnnxRefusal::ExternalData(_))
        ));
    }

    #[test]
    fn not_a_model_is_refused() {
        assert!(matches!(
            check_onnx(b"\0asm\x01\0\0\0"),
            Err(OnnxRefusal::Malformed(_))
        ));
        assert_eq!(check_onnx(&[]), Err(OnnxRefusal::NoGraph));
        let whole = model(&relu_node());
        for cut in 1..whole.len() {
            assert!(check_onnx(&whole[..cut]).is_err(), "cut at {cut}");
        }
        // A length that claims more than the file holds.
        let mut lying = Vec::new();
        key(7, 2, &mut lying);
        put_varint(u64::MAX, &mut lying);
        assert!(matches!(check_onnx(&lying), Err(OnnxRefusal::Malformed(_))));
    }

    #[test]
    fn nesting_is_bounded() {
        let mut graph = relu_node();
        for _ in 0..MAX_GRAPH_DEPTH + 1 {
            let mut attribute = Vec::new();
            message(6, &graph, &mut attribute);
            let mut node = Vec::new();
            message(5, &attribute, &mut node);
            graph = Vec::new();
            message(1, &node, &mut graph);
        }
        assert!(matches!(
            check_onnx(&model(&graph)),
            Err(OnnxRefusal::TooComplex(_))
        ));
    }
}
