//! Python source understanding for the offline proposer, on tree-sitter.
//!
//! Mutation must stay syntactically valid and mostly type-correct, or most of
//! the evaluation budget is wasted on children that crash. This module parses
//! Python, finds the editable regions (EVOLVE-BLOCK markers), infers a small
//! type for expressions (number, bool, list of numbers) and computes which
//! variables are in scope at a point, so operators can build expressions that
//! make sense where they are placed.

use std::ops::Range;

use tree_sitter::{Node, Parser, Tree};

/// Comment text that opens an editable block.
pub const EVOLVE_BLOCK_START: &str = "EVOLVE-BLOCK-START";
/// Comment text that closes an editable block.
pub const EVOLVE_BLOCK_END: &str = "EVOLVE-BLOCK-END";

/// Why a source file cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourceError {
    /// Tree-sitter found syntax errors; the message names the first one.
    #[error("syntax error at line {line}, column {column}: {context}")]
    Syntax {
        line: usize,
        column: usize,
        context: String,
    },
    /// The parser could not be set up or gave up.
    #[error("parser failure: {0}")]
    Parser(String),
    /// EVOLVE-BLOCK markers are unbalanced or nested.
    #[error("{0}")]
    Markers(String),
}

/// Parses Python source, returning the tree even when it contains errors.
pub fn parse(source: &str) -> Result<Tree, SourceError> {
    let mut parser = Parser::new();
    parser
        .set_language(&tree_sitter_python::LANGUAGE.into())
        .map_err(|error| SourceError::Parser(error.to_string()))?;
    parser
        .parse(source, None)
        .ok_or_else(|| SourceError::Parser("tree-sitter returned no tree".into()))
}

/// Parses Python source and fails on any ERROR or MISSING node.
pub fn parse_strict(source: &str) -> Result<Tree, SourceError> {
    let tree = parse(source)?;
    if let Some(bad) = first_error(tree.root_node()) {
        let position = bad.start_position();
        let line_text = source
            .lines()
            .nth(position.row)
            .unwrap_or("")
            .trim()
            .to_string();
        let what = if bad.is_missing() {
            format!("missing `{}`", bad.kind())
        } else {
            "unexpected code".into()
        };
        return Err(SourceError::Syntax {
            line: position.row + 1,
            column: position.column + 1,
            context: format!("{what} in `{line_text}`"),
        });
    }
    Ok(tree)
}

fn first_error(node: Node<'_>) -> Option<Node<'_>> {
    if !node.has_error() {
        return None;
    }
    if node.is_error() || node.is_missing() {
        return Some(node);
    }
    let mut cursor = node.walk();
    let children: Vec<Node<'_>> = node.children(&mut cursor).collect();
    children.into_iter().find_map(first_error).or(Some(node))
}

/// The byte ranges of `source` that may change: between EVOLVE-BLOCK markers
/// when the file has any, otherwise the whole file.
pub fn editable_regions(source: &str) -> Result<Vec<Range<usize>>, SourceError> {
    let segments = split_by_markers(source)?;
    if segments.markers == 0 {
        return Ok(std::iter::once(0..source.len()).collect());
    }
    Ok(segments.editable)
}

/// True when `range` lies inside one of `regions`.
pub fn within_regions(regions: &[Range<usize>], range: &Range<usize>) -> bool {
    regions
        .iter()
        .any(|region| region.start <= range.start && range.end <= region.end)
}

struct MarkerSegments {
    markers: usize,
    /// Everything outside the editable blocks, markers included, in order.
    frozen: Vec<String>,
    editable: Vec<Range<usize>>,
}

fn marker_kind(line: &str) -> Option<bool> {
    let comment = line.find('#').map(|at| &line[at..])?;
    if comment.contains(EVOLVE_BLOCK_START) {
        Some(true)
    } else if comment.contains(EVOLVE_BLOCK_END) {
        Some(false)
    } else {
        None
    }
}

fn split_by_markers(source: &str) -> Result<MarkerSegments, SourceError> {
    let mut segments = MarkerSegments {
        markers: 0,
        frozen: Vec::new(),
        editable: Vec::new(),
    };
    let mut frozen_start = 0;
    let mut open_block: Option<usize> = None;
    let mut offset = 0;
    for (index, line) in source.split_inclusive('\n').enumerate() {
        let line_end = offset + line.len();
        match (marker_kind(line), open_block) {
            (Some(true), None) => {
                segments.markers += 1;
                open_block = Some(line_end);
            }
            (Some(true), Some(_)) => {
                return Err(SourceError::Markers(format!(
                    "nested {EVOLVE_BLOCK_START} at line {}",
                    index + 1
                )));
            }
            (Some(false), Some(block_start)) => {
                segments.markers += 1;
                segments
                    .frozen
                    .push(source[frozen_start..block_start].to_string());
                segments.editable.push(block_start..offset);
                frozen_start = offset;
                open_block = None;
            }
            (Some(false), None) => {
                return Err(SourceError::Markers(format!(
                    "{EVOLVE_BLOCK_END} without {EVOLVE_BLOCK_START} at line {}",
                    index + 1
                )));
            }
            (None, _) => {}
        }
        offset = line_end;
    }
    if open_block.is_some() {
        return Err(SourceError::Markers(format!(
            "{EVOLVE_BLOCK_START} without {EVOLVE_BLOCK_END}"
        )));
    }
    segments.frozen.push(source[frozen_start..].to_string());
    if segments.markers == 0 {
        // No markers: the whole file is editable, nothing is frozen.
        segments.frozen.clear();
    }
    Ok(segments)
}

/// True when `child` equals `parent` everywhere outside the editable blocks,
/// markers included (files without markers are editable everywhere).
pub fn frozen_parts_equal(parent: &str, child: &str) -> bool {
    match (split_by_markers(parent), split_by_markers(child)) {
        (Ok(parent_segments), Ok(child_segments)) => {
            parent_segments.markers == child_segments.markers
                && parent_segments.frozen == child_segments.frozen
        }
        _ => false,
    }
}

/// A small static type, enough to keep generated expressions meaningful.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ty {
    Int,
    Float,
    Bool,
    NumList,
    Unknown,
}

impl Ty {
    /// Int or Float.
    pub fn is_numeric(self) -> bool {
        matches!(self, Ty::Int | Ty::Float)
    }
}

/// A variable visible at some point of the program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    pub name: String,
    pub ty: Ty,
}

/// Variables in scope at a point; later bindings shadow earlier ones.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    bindings: Vec<Binding>,
}

impl Scope {
    fn bind(&mut self, name: &str, ty: Ty) {
        self.bindings.retain(|binding| binding.name != name);
        self.bindings.push(Binding {
            name: name.to_string(),
            ty,
        });
    }

    /// The type of `name`, if bound.
    pub fn lookup(&self, name: &str) -> Option<Ty> {
        self.bindings
            .iter()
            .rev()
            .find(|binding| binding.name == name)
            .map(|binding| binding.ty)
    }

    /// True when `name` is bound.
    pub fn contains(&self, name: &str) -> bool {
        self.lookup(name).is_some()
    }

    /// Bindings of the given types, in binding order.
    pub fn of_types(&self, types: &[Ty]) -> Vec<&Binding> {
        self.bindings
            .iter()
            .filter(|binding| types.contains(&binding.ty))
            .collect()
    }
}

/// Builtins an expression may use without binding them.
pub const BUILTINS: &[&str] = &[
    "abs",
    "min",
    "max",
    "len",
    "sum",
    "float",
    "int",
    "round",
    "range",
    "enumerate",
    "zip",
    "sorted",
    "reversed",
    "list",
    "tuple",
    "bool",
    "pow",
    "all",
    "any",
    "True",
    "False",
    "None",
];

/// The source text of a node.
pub fn text<'s>(node: Node<'_>, source: &'s str) -> &'s str {
    &source[node.byte_range()]
}

fn is_field(parent: Node<'_>, field: &str, node: Node<'_>) -> bool {
    parent.child_by_field_name(field) == Some(node)
}

/// True when `outer` contains `inner` (or is it).
pub fn encloses(outer: Node<'_>, inner: Node<'_>) -> bool {
    outer.start_byte() <= inner.start_byte() && inner.end_byte() <= outer.end_byte()
}

fn named_children(node: Node<'_>) -> Vec<Node<'_>> {
    let mut cursor = node.walk();
    node.named_children(&mut cursor).collect()
}

fn annotation_type(annotation: &str) -> Ty {
    let compact: String = annotation.chars().filter(|c| !c.is_whitespace()).collect();
    match compact.as_str() {
        "float" => Ty::Float,
        "int" => Ty::Int,
        "bool" => Ty::Bool,
        _ => {
            let list_like = [
                "list[",
                "List[",
                "Sequence[",
                "tuple[",
                "Tuple[",
                "Iterable[",
            ];
            let numeric_inner = compact.ends_with("[float]")
                || compact.ends_with("[int]")
                || compact.ends_with("[float,...]")
                || compact.ends_with("[int,...]");
            if list_like.iter().any(|prefix| compact.starts_with(prefix)) && numeric_inner {
                Ty::NumList
            } else {
                Ty::Unknown
            }
        }
    }
}

fn numeric_join(left: Ty, right: Ty) -> Ty {
    match (left, right) {
        (Ty::Int, Ty::Int) => Ty::Int,
        (a, b) if a.is_numeric() && b.is_numeric() => Ty::Float,
        _ => Ty::Unknown,
    }
}

/// Infers the type of an expression node under `scope`.
pub fn infer(node: Node<'_>, source: &str, scope: &Scope) -> Ty {
    match node.kind() {
        "integer" => Ty::Int,
        "float" => Ty::Float,
        "true" | "false" | "comparison_operator" | "not_operator" => Ty::Bool,
        "identifier" => scope.lookup(text(node, source)).unwrap_or(Ty::Unknown),
        "parenthesized_expression" => named_children(node)
            .into_iter()
            .find(|child| child.kind() != "comment")
            .map_or(Ty::Unknown, |inner| infer(inner, source, scope)),
        "unary_operator" => {
            let argument = node.child_by_field_name("argument");
            let ty = argument.map_or(Ty::Unknown, |argument| infer(argument, source, scope));
            if ty == Ty::Bool {
                Ty::Int
            } else if ty.is_numeric() {
                ty
            } else {
                Ty::Unknown
            }
        }
        "boolean_operator" => {
            let left = node
                .child_by_field_name("left")
                .map_or(Ty::Unknown, |n| infer(n, source, scope));
            let right = node
                .child_by_field_name("right")
                .map_or(Ty::Unknown, |n| infer(n, source, scope));
            if left == right { left } else { Ty::Unknown }
        }
        "binary_operator" => {
            let left = node
                .child_by_field_name("left")
                .map_or(Ty::Unknown, |n| infer(n, source, scope));
            let right = node
                .child_by_field_name("right")
                .map_or(Ty::Unknown, |n| infer(n, source, scope));
            let operator = node
                .child_by_field_name("operator")
                .map(|n| text(n, source))
                .unwrap_or("");
            match operator {
                "/" if left.is_numeric() && right.is_numeric() => Ty::Float,
                "+" if left == Ty::NumList && right == Ty::NumList => Ty::NumList,
                "*" if (left == Ty::NumList && right == Ty::Int)
                    || (left == Ty::Int && right == Ty::NumList) =>
                {
                    Ty::NumList
                }
                "+" | "-" | "*" | "//" | "%" | "**" | "/" => numeric_join(left, right),
                _ => Ty::Unknown,
            }
        }
        "conditional_expression" => named_children(node)
            .first()
            .map_or(Ty::Unknown, |consequence| {
                infer(*consequence, source, scope)
            }),
        "subscript" => {
            let value = node
                .child_by_field_name("value")
                .map_or(Ty::Unknown, |n| infer(n, source, scope));
            let index = node.child_by_field_name("subscript");
            match (value, index.map(|index| index.kind())) {
                (Ty::NumList, Some("slice")) => Ty::NumList,
                (Ty::NumList, _) => Ty::Float,
                _ => Ty::Unknown,
            }
        }
        "list" => {
            let elements = named_children(node);
            if !elements.is_empty()
                && elements
                    .iter()
                    .all(|element| infer(*element, source, scope).is_numeric())
            {
                Ty::NumList
            } else {
                Ty::Unknown
            }
        }
        "list_comprehension" => {
            let mut inner = scope.clone();
            for clause in named_children(node)
                .into_iter()
                .filter(|child| child.kind() == "for_in_clause")
            {
                bind_loop_targets(clause, source, &mut inner);
            }
            match node
                .child_by_field_name("body")
                .map(|body| infer(body, source, &inner))
            {
                Some(ty) if ty.is_numeric() => Ty::NumList,
                _ => Ty::Unknown,
            }
        }
        "call" => infer_call(node, source, scope),
        _ => Ty::Unknown,
    }
}

fn call_arguments(call: Node<'_>) -> Vec<Node<'_>> {
    call.child_by_field_name("arguments")
        .filter(|arguments| arguments.kind() == "argument_list")
        .map(|arguments| {
            named_children(arguments)
                .into_iter()
                .filter(|n| n.kind() != "comment")
                .collect()
        })
        .unwrap_or_default()
}

fn infer_call(node: Node<'_>, source: &str, scope: &Scope) -> Ty {
    let Some(function) = node.child_by_field_name("function") else {
        return Ty::Unknown;
    };
    let arguments = call_arguments(node);
    let argument_types: Vec<Ty> = arguments
        .iter()
        .map(|argument| infer(*argument, source, scope))
        .collect();
    let name = text(function, source);
    match name {
        "min" | "max" => match argument_types.as_slice() {
            [Ty::NumList] => Ty::Float,
            types if types.len() >= 2 && types.iter().all(|ty| ty.is_numeric()) => types
                .iter()
                .copied()
                .reduce(numeric_join)
                .unwrap_or(Ty::Unknown),
            _ => Ty::Unknown,
        },
        "abs" => argument_types
            .first()
            .copied()
            .filter(|ty| ty.is_numeric())
            .unwrap_or(Ty::Unknown),
        "float" | "sum" => Ty::Float,
        "int" | "len" | "round" => Ty::Int,
        "sorted" | "list" | "reversed" => match argument_types.as_slice() {
            [Ty::NumList] => Ty::NumList,
            _ => Ty::Unknown,
        },
        _ if name.starts_with("math.") => Ty::Float,
        _ => Ty::Unknown,
    }
}

fn element_type(iterable: Node<'_>, source: &str, scope: &Scope) -> Ty {
    if iterable.kind() == "call" {
        let function = iterable
            .child_by_field_name("function")
            .map(|f| text(f, source))
            .unwrap_or("");
        if function == "range" {
            return Ty::Int;
        }
    }
    match infer(iterable, source, scope) {
        Ty::NumList => Ty::Float,
        _ => Ty::Unknown,
    }
}

fn bind_target(target: Node<'_>, ty: Ty, source: &str, scope: &mut Scope) {
    match target.kind() {
        "identifier" => scope.bind(text(target, source), ty),
        "pattern_list"
        | "tuple_pattern"
        | "list_pattern"
        | "tuple"
        | "list"
        | "parenthesized_expression" => {
            for element in named_children(target) {
                bind_target(element, Ty::Unknown, source, scope);
            }
        }
        _ => {}
    }
}

/// Binds the targets of a `for` statement or a comprehension's `for ... in` clause.
fn bind_loop_targets(loop_node: Node<'_>, source: &str, scope: &mut Scope) {
    let (Some(left), Some(right)) = (
        loop_node.child_by_field_name("left"),
        loop_node.child_by_field_name("right"),
    ) else {
        return;
    };
    let targets: Vec<Node<'_>> = match left.kind() {
        "pattern_list" | "tuple_pattern" | "tuple" => named_children(left),
        _ => vec![left],
    };
    let function = if right.kind() == "call" {
        right
            .child_by_field_name("function")
            .map(|f| text(f, source))
            .unwrap_or("")
    } else {
        ""
    };
    let arguments = if right.kind() == "call" {
        call_arguments(right)
    } else {
        Vec::new()
    };
    match (function, targets.as_slice(), arguments.as_slice()) {
        ("enumerate", [index, element], [iterable, ..]) => {
            scope.bind_node(*index, Ty::Int, source);
            let ty = element_type(*iterable, source, scope);
            bind_target(*element, ty, source, scope);
        }
        ("zip", targets, iterables) if targets.len() == iterables.len() => {
            let types: Vec<Ty> = iterables
                .iter()
                .map(|iterable| element_type(*iterable, source, scope))
                .collect();
            for (target, ty) in targets.iter().zip(types) {
                bind_target(*target, ty, source, scope);
            }
        }
        (_, [single], _) => {
            let ty = element_type(right, source, scope);
            bind_target(*single, ty, source, scope);
        }
        _ => {
            for target in targets {
                bind_target(target, Ty::Unknown, source, scope);
            }
        }
    }
}

impl Scope {
    fn bind_node(&mut self, node: Node<'_>, ty: Ty, source: &str) {
        bind_target(node, ty, source, self);
    }
}

fn bind_parameters(function: Node<'_>, source: &str, scope: &mut Scope) {
    let Some(parameters) = function.child_by_field_name("parameters") else {
        return;
    };
    for parameter in named_children(parameters) {
        match parameter.kind() {
            "identifier" => scope.bind(text(parameter, source), Ty::Unknown),
            "typed_parameter" => {
                let ty = parameter
                    .child_by_field_name("type")
                    .map_or(Ty::Unknown, |t| annotation_type(text(t, source)));
                if let Some(name) = named_children(parameter)
                    .into_iter()
                    .find(|n| n.kind() == "identifier")
                {
                    scope.bind(text(name, source), ty);
                }
            }
            "default_parameter" | "typed_default_parameter" => {
                let annotated = parameter
                    .child_by_field_name("type")
                    .map(|t| annotation_type(text(t, source)));
                let ty = annotated.unwrap_or_else(|| {
                    parameter
                        .child_by_field_name("value")
                        .map_or(Ty::Unknown, |value| infer(value, source, scope))
                });
                if let Some(name) = parameter.child_by_field_name("name") {
                    scope.bind(text(name, source), ty);
                }
            }
            _ => {}
        }
    }
}

fn bind_imports(statement: Node<'_>, source: &str, scope: &mut Scope) {
    for child in named_children(statement) {
        match child.kind() {
            "dotted_name" => {
                let first = text(child, source).split('.').next().unwrap_or("");
                if statement.kind() == "import_statement" && !first.is_empty() {
                    scope.bind(first, Ty::Unknown);
                } else if statement.kind() == "import_from_statement"
                    && statement.child_by_field_name("module_name") != Some(child)
                {
                    scope.bind(text(child, source), Ty::Unknown);
                }
            }
            "aliased_import" => {
                if let Some(alias) = child.child_by_field_name("alias") {
                    scope.bind(text(alias, source), Ty::Unknown);
                }
            }
            _ => {}
        }
    }
}

/// The variables in scope just before `target`, with their inferred types.
pub fn scope_at(root: Node<'_>, target: Node<'_>, source: &str) -> Scope {
    let mut scope = Scope::default();
    collect_bindings(root, target, source, &mut scope);
    scope
}

fn collect_bindings(node: Node<'_>, target: Node<'_>, source: &str, scope: &mut Scope) {
    for child in named_children(node) {
        let contains_target = encloses(child, target);
        if child.start_byte() >= target.start_byte() && !contains_target {
            break;
        }
        match child.kind() {
            "function_definition" => {
                if let Some(name) = child.child_by_field_name("name") {
                    scope.bind(text(name, source), Ty::Unknown);
                }
                if contains_target {
                    bind_parameters(child, source, scope);
                    if let Some(body) = child.child_by_field_name("body") {
                        collect_bindings(body, target, source, scope);
                    }
                }
            }
            "class_definition" | "lambda" => {
                if contains_target {
                    collect_bindings(child, target, source, scope);
                }
            }
            "for_statement" => {
                bind_loop_targets(child, source, scope);
                collect_bindings(child, target, source, scope);
            }
            "list_comprehension"
            | "generator_expression"
            | "set_comprehension"
            | "dictionary_comprehension" => {
                if contains_target {
                    for clause in named_children(child)
                        .into_iter()
                        .filter(|n| n.kind() == "for_in_clause")
                    {
                        if clause.start_byte() < target.start_byte()
                            || child
                                .child_by_field_name("body")
                                .is_some_and(|body| encloses(body, target))
                        {
                            bind_loop_targets(clause, source, scope);
                        }
                    }
                    collect_bindings(child, target, source, scope);
                }
            }
            "assignment" => {
                if child.end_byte() <= target.start_byte() {
                    if let Some(left) = child.child_by_field_name("left") {
                        let annotated = child
                            .child_by_field_name("type")
                            .map(|t| annotation_type(text(t, source)));
                        let ty = annotated.unwrap_or_else(|| {
                            child
                                .child_by_field_name("right")
                                .map_or(Ty::Unknown, |right| infer(right, source, scope))
                        });
                        let ty = if left.kind() == "identifier" {
                            ty
                        } else {
                            Ty::Unknown
                        };
                        bind_target(left, ty, source, scope);
                    }
                } else {
                    collect_bindings(child, target, source, scope);
                }
            }
            "import_statement" | "import_from_statement" => bind_imports(child, source, scope),
            _ => collect_bindings(child, target, source, scope),
        }
    }
}

/// True when `node` sits where a value is read (not a target, a name, an index or a type).
pub fn is_value_position(node: Node<'_>, source: &str) -> bool {
    let Some(parent) = node.parent() else {
        return false;
    };
    match parent.kind() {
        "assignment" | "augmented_assignment" => {
            !is_field(parent, "left", node) && !is_field(parent, "type", node)
        }
        "for_statement" | "for_in_clause" => !is_field(parent, "left", node),
        "call" => !is_field(parent, "function", node),
        "keyword_argument" => !is_field(parent, "name", node),
        "subscript" => !is_field(parent, "subscript", node) && false_if_value_is_target(parent),
        "attribute" => false,
        "default_parameter" | "typed_default_parameter" => is_field(parent, "value", node),
        "parameters"
        | "typed_parameter"
        | "lambda_parameters"
        | "global_statement"
        | "nonlocal_statement"
        | "pattern_list"
        | "tuple_pattern"
        | "list_pattern"
        | "type"
        | "decorator"
        | "dotted_name"
        | "import_statement"
        | "import_from_statement"
        | "aliased_import"
        | "slice" => false,
        "argument_list" => {
            let function = parent
                .parent()
                .and_then(|call| call.child_by_field_name("function"));
            let function = function.map(|f| text(f, source)).unwrap_or("");
            !matches!(
                function,
                "range" | "enumerate" | "zip" | "round" | "int" | "len"
            )
        }
        "binary_operator" => {
            let operator = parent
                .child_by_field_name("operator")
                .map(|o| text(o, source))
                .unwrap_or("");
            !(operator == "**" && is_field(parent, "right", node))
        }
        _ => true,
    }
}

fn false_if_value_is_target(subscript: Node<'_>) -> bool {
    match subscript.parent() {
        Some(parent) if matches!(parent.kind(), "assignment" | "augmented_assignment") => {
            !is_field(parent, "left", subscript)
        }
        _ => true,
    }
}

/// Identifiers an expression reads from its environment (names bound inside it and attribute names excluded).
pub fn free_identifiers(node: Node<'_>, source: &str) -> Vec<String> {
    let mut bound = Scope::default();
    let mut stack = vec![node];
    let mut all = Vec::new();
    while let Some(current) = stack.pop() {
        if current.kind() == "for_in_clause" {
            bind_loop_targets(current, source, &mut bound);
        }
        if current.kind() == "identifier" {
            let skip = current.parent().is_some_and(|parent| {
                (parent.kind() == "attribute" && is_field(parent, "attribute", current))
                    || (parent.kind() == "keyword_argument" && is_field(parent, "name", current))
            });
            if !skip {
                all.push(text(current, source).to_string());
            }
        }
        let mut cursor = current.walk();
        stack.extend(current.named_children(&mut cursor));
    }
    all.retain(|name| !bound.contains(name) && !BUILTINS.contains(&name.as_str()));
    all.sort();
    all.dedup();
    all
}

/// Visits every node of the tree in document order.
pub fn walk_all<'t>(root: Node<'t>, visit: &mut dyn FnMut(Node<'t>)) {
    let mut cursor = root.walk();
    let mut done = false;
    while !done {
        visit(cursor.node());
        if cursor.goto_first_child() {
            continue;
        }
        loop {
            if cursor.goto_next_sibling() {
                break;
            }
            if !cursor.goto_parent() {
                done = true;
                break;
            }
        }
    }
}

/// Column (in bytes) of the start of the line holding `offset`, and that line's start offset.
pub fn line_start(source: &str, offset: usize) -> usize {
    source[..offset].rfind('\n').map_or(0, |at| at + 1)
}

/// 1-based line number of a byte offset.
pub fn line_number(source: &str, offset: usize) -> usize {
    source[..offset.min(source.len())].matches('\n').count() + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn find<'t>(root: Node<'t>, source: &str, kind: &str, snippet: &str) -> Node<'t> {
        let mut found = None;
        walk_all(root, &mut |node| {
            if found.is_none() && node.kind() == kind && text(node, source) == snippet {
                found = Some(node);
            }
        });
        found.unwrap_or_else(|| panic!("no {kind} `{snippet}`"))
    }

    #[test]
    fn strict_parse_reports_the_error_line() {
        assert!(parse_strict("def f(x):\n    return x + 1\n").is_ok());
        let error = parse_strict("def f(x):\n    return x +\n").unwrap_err();
        assert!(
            matches!(error, SourceError::Syntax { line: 2, .. }),
            "{error}"
        );
    }

    #[test]
    fn regions_follow_markers() {
        let source = "a = 1\n# EVOLVE-BLOCK-START\nb = 2\n# EVOLVE-BLOCK-END\nc = 3\n";
        let regions = editable_regions(source).unwrap();
        assert_eq!(regions.len(), 1);
        assert_eq!(&source[regions[0].clone()], "b = 2\n");
        assert_eq!(
            editable_regions("x = 1\n").unwrap(),
            std::iter::once(0..6).collect::<Vec<_>>()
        );
        assert!(editable_regions("# EVOLVE-BLOCK-START\nx = 1\n").is_err());
        assert!(editable_regions("# EVOLVE-BLOCK-END\n").is_err());
        assert!(frozen_parts_equal(
            source,
            "a = 1\n# EVOLVE-BLOCK-START\nb = 7\nb += 1\n# EVOLVE-BLOCK-END\nc = 3\n"
        ));
        assert!(!frozen_parts_equal(
            source,
            "a = 2\n# EVOLVE-BLOCK-START\nb = 2\n# EVOLVE-BLOCK-END\nc = 3\n"
        ));
    }

    #[test]
    fn scope_and_types_at_a_point() {
        let source = "import math\nLIMIT = 3\n\ndef priority(item: float, bins: list[float]) -> list[float]:\n    scores = []\n    for i, b in enumerate(bins):\n        gap = b - item\n        scores.append(-gap * 2)\n    return [x for x in scores]\n";
        let tree = parse_strict(source).unwrap();
        let root = tree.root_node();
        let site = find(root, source, "binary_operator", "-gap * 2");
        let scope = scope_at(root, site, source);
        assert_eq!(scope.lookup("item"), Some(Ty::Float));
        assert_eq!(scope.lookup("bins"), Some(Ty::NumList));
        assert_eq!(scope.lookup("i"), Some(Ty::Int));
        assert_eq!(scope.lookup("b"), Some(Ty::Float));
        assert_eq!(scope.lookup("gap"), Some(Ty::Float));
        assert_eq!(scope.lookup("LIMIT"), Some(Ty::Int));
        assert_eq!(scope.lookup("math"), Some(Ty::Unknown));
        assert_eq!(scope.lookup("x"), None);
        assert_eq!(infer(site, source, &scope), Ty::Float);
        let later = find(root, source, "identifier", "x");
        assert!(!is_value_position(
            find(root, source, "identifier", "gap"),
            source
        ));
        assert_eq!(
            free_identifiers(
                find(root, source, "list_comprehension", "[x for x in scores]"),
                source
            ),
            vec!["scores"]
        );
        let _ = later;
    }
}
