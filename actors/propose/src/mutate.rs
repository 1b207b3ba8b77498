//! The offline proposer: genetic programming on Python with tree-sitter.
//!
//! With no LLM reachable, dgm still has to improve agents. This proposer does
//! real program search: it picks a syntactic site inside the evolvable code
//! and changes it with one of a handful of operators (operator and constant
//! mutation, statement deletion / duplication / swap, subexpression
//! replacement from the program or from a typed grammar, growing and
//! shrinking expressions), or recombines the parent with a donor (crossover).
//! Every child re-parses cleanly, leaves frozen code and protected files
//! untouched, differs from its parent, and is a pure function of the seed.

use std::collections::BTreeMap;
use std::ops::Range;

use async_trait::async_trait;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tree_sitter::Node;

use crate::crossover;
use crate::grammar::{self, Expr, Vocabulary};
use crate::proposer::{Proposal, ProposalRequest, ProposeError, Proposer};
use crate::python::{self, Scope, Ty};

/// Relative weights of the mutation operators (0 disables one).
#[derive(Debug, Clone, PartialEq)]
pub struct OperatorWeights {
    /// Swap a binary, comparison, boolean or augmented-assignment operator.
    pub operator: f64,
    /// Perturb, scale, flip or replace a numeric constant.
    pub constant: f64,
    /// Replace a numeric subexpression with one built by the typed grammar.
    pub subexpr_grammar: f64,
    /// Replace a numeric subexpression with another one from the program.
    pub subexpr_program: f64,
    /// Wrap a numeric subexpression: `e op g`, `-e`, `e ** 2`, `min/max(e, g)`, conditionals.
    pub grow: f64,
    /// Replace a compound numeric subexpression with one of its parts.
    pub shrink: f64,
    /// Delete a statement.
    pub statement_delete: f64,
    /// Duplicate a statement.
    pub statement_duplicate: f64,
    /// Swap two statements of one block.
    pub statement_swap: f64,
}

impl Default for OperatorWeights {
    /// Biased toward expression-level changes: they rarely break a program
    /// and are where heuristics like bin-packing priorities improve.
    fn default() -> Self {
        Self {
            operator: 12.0,
            constant: 22.0,
            subexpr_grammar: 20.0,
            subexpr_program: 7.0,
            grow: 20.0,
            shrink: 8.0,
            statement_delete: 3.0,
            statement_duplicate: 2.0,
            statement_swap: 3.0,
        }
    }
}

/// Tuning of the mutation proposer.
#[derive(Debug, Clone, PartialEq)]
pub struct MutateConfig {
    /// Children tried (each re-parsed) before giving up with `NoChangePossible`.
    pub max_tries: usize,
    /// Most edits combined into one child.
    pub max_edits: usize,
    /// Probability of adding one more edit to a child (geometric, up to `max_edits`).
    pub extra_edit_probability: f64,
    /// Probability of recombining with the donor when the request has one.
    pub crossover_probability: f64,
    /// Operator weights.
    pub weights: OperatorWeights,
}

impl Default for MutateConfig {
    fn default() -> Self {
        Self {
            max_tries: 64,
            max_edits: 3,
            extra_edit_probability: 0.3,
            crossover_probability: 0.8,
            weights: OperatorWeights::default(),
        }
    }
}

/// The offline mutation proposer (`mutate`).
#[derive(Debug, Clone, Default)]
pub struct MutateProposer {
    config: MutateConfig,
}

/// One textual change of one file, with what it means.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Edit {
    pub range: Range<usize>,
    pub replacement: String,
    pub kind: &'static str,
    pub summary: String,
}

impl Edit {
    pub(crate) fn apply(&self, source: &str) -> String {
        let mut child = String::with_capacity(source.len() + self.replacement.len());
        child.push_str(&source[..self.range.start]);
        child.push_str(&self.replacement);
        child.push_str(&source[self.range.end..]);
        child
    }
}

/// An evolvable Python file of the parent.
pub(crate) struct EvolvableFile {
    pub path: String,
    pub source: String,
    pub editable_bytes: usize,
}

/// Collects the parent's evolvable Python files, checking that each parses and has balanced markers.
pub(crate) fn evolvable_files(
    request: &ProposalRequest,
) -> Result<Vec<EvolvableFile>, ProposeError> {
    let policy = request.policy();
    let mut files = Vec::new();
    for path in request.parent.paths() {
        if !path.ends_with(".py") || !policy.is_evolvable(path) {
            continue;
        }
        let Some(source) = request.parent.text(path) else {
            continue;
        };
        python::parse_strict(source).map_err(|error| ProposeError::Parse {
            path: path.to_string(),
            reason: error.to_string(),
        })?;
        let regions = python::editable_regions(source).map_err(|error| ProposeError::Markers {
            path: path.to_string(),
            reason: error.to_string(),
        })?;
        let editable_bytes = regions.iter().map(|region| region.len()).sum();
        if editable_bytes > 0 {
            files.push(EvolvableFile {
                path: path.to_string(),
                source: source.to_string(),
                editable_bytes,
            });
        }
    }
    Ok(files)
}

/// Checks a candidate child source: parses cleanly, same frozen parts, and differs.
pub(crate) fn acceptable_child(parent_source: &str, child_source: &str) -> bool {
    child_source != parent_source
        && python::frozen_parts_equal(parent_source, child_source)
        && python::parse_strict(child_source).is_ok()
}

impl MutateProposer {
    /// A proposer with the given configuration.
    pub fn new(config: MutateConfig) -> Self {
        Self { config }
    }

    /// The configuration in use.
    pub fn config(&self) -> &MutateConfig {
        &self.config
    }

    /// Proposes a child synchronously (the async trait method calls this).
    pub fn propose_sync(&self, request: &ProposalRequest) -> Result<Proposal, ProposeError> {
        let files = evolvable_files(request)?;
        if files.is_empty() {
            return Err(ProposeError::NoChangePossible(
                "no evolvable Python file with editable code (check the evolvable and protected patterns)".into(),
            ));
        }
        let mut rng = ChaCha8Rng::seed_from_u64(request.seed);
        if let Some(donor) = &request.donor
            && rng.gen_bool(self.config.crossover_probability.clamp(0.0, 1.0))
        {
            let policy = request.policy();
            for _ in 0..self.config.max_tries {
                if let Some(proposal) =
                    crossover::recombine(&request.parent, donor, &files, &policy, &mut rng)
                {
                    return Ok(proposal);
                }
            }
        }
        for _ in 0..self.config.max_tries.max(1) {
            if let Some(proposal) = self.try_mutation(request, &files, &mut rng) {
                return Ok(proposal);
            }
        }
        Err(ProposeError::NoChangePossible(format!(
            "no valid child that differs from the parent after {} tries",
            self.config.max_tries
        )))
    }

    fn try_mutation(
        &self,
        request: &ProposalRequest,
        files: &[EvolvableFile],
        rng: &mut ChaCha8Rng,
    ) -> Option<Proposal> {
        let mut edits_wanted = 1;
        while edits_wanted < self.config.max_edits.max(1)
            && rng.gen_bool(self.config.extra_edit_probability.clamp(0.0, 1.0))
        {
            edits_wanted += 1;
        }
        let mut current: BTreeMap<&str, String> = files
            .iter()
            .map(|file| (file.path.as_str(), file.source.clone()))
            .collect();
        let mut kinds = Vec::new();
        let mut summaries = Vec::new();
        for _ in 0..edits_wanted {
            let file = files
                .choose_weighted(rng, |file| file.editable_bytes as f64)
                .ok()?;
            let source = current.get(file.path.as_str())?.clone();
            let Some(edit) = propose_edit(&file.path, &source, &self.config.weights, rng) else {
                continue;
            };
            let child = edit.apply(&source);
            if !acceptable_child(&source, &child)
                || !python::frozen_parts_equal(&file.source, &child)
            {
                continue;
            }
            current.insert(file.path.as_str(), child);
            kinds.push(edit.kind);
            summaries.push(edit.summary);
        }
        let mut child_tree = request.parent.clone();
        for (path, source) in &current {
            child_tree.insert(*path, source.as_bytes().to_vec());
        }
        if kinds.is_empty() || child_tree == request.parent {
            return None;
        }
        let mut unique_kinds: Vec<&str> = Vec::new();
        for kind in kinds {
            if !unique_kinds.contains(&kind) {
                unique_kinds.push(kind);
            }
        }
        Some(Proposal {
            files: child_tree,
            kind: unique_kinds.join("+"),
            summary: summaries.join("; "),
        })
    }
}

#[async_trait]
impl Proposer for MutateProposer {
    fn name(&self) -> &str {
        "mutate"
    }

    async fn propose(&self, request: &ProposalRequest) -> Result<Proposal, ProposeError> {
        self.propose_sync(request)
    }
}

// ---------------------------------------------------------------------------
// Sites

const EXPRESSION_KINDS: &[&str] = &[
    "identifier",
    "integer",
    "float",
    "binary_operator",
    "unary_operator",
    "parenthesized_expression",
    "call",
    "subscript",
    "conditional_expression",
];

const COMPOUND_KINDS: &[&str] = &[
    "binary_operator",
    "unary_operator",
    "parenthesized_expression",
    "call",
    "conditional_expression",
];

/// Syntactic sites of one parsed source, restricted to its editable regions.
pub(crate) struct Sites<'t> {
    pub root: Node<'t>,
    pub operators: Vec<Node<'t>>,
    pub numbers: Vec<Node<'t>>,
    /// Expressions in value position that might be numeric (checked lazily: typing needs the scope).
    pub expressions: Vec<Node<'t>>,
    /// Every expression of the file, inside the regions or not (material for reuse).
    pub all_expressions: Vec<Node<'t>>,
    /// Statements of blocks, grouped by block; only statements inside the regions.
    pub blocks: Vec<Vec<Node<'t>>>,
}

fn operator_family(token: &str) -> Option<&'static [&'static str]> {
    const ARITHMETIC: &[&str] = &["+", "-", "*", "/"];
    const COMPARISON: &[&str] = &["<", "<=", ">", ">=", "==", "!="];
    const BOOLEAN: &[&str] = &["and", "or"];
    const AUGMENTED: &[&str] = &["+=", "-=", "*=", "/="];
    match token {
        "+" | "-" | "*" | "/" | "//" | "%" | "**" => Some(ARITHMETIC),
        "<" | "<=" | ">" | ">=" | "==" | "!=" => Some(COMPARISON),
        "and" | "or" => Some(BOOLEAN),
        "+=" | "-=" | "*=" | "/=" => Some(AUGMENTED),
        _ => None,
    }
}

fn is_statement(node: Node<'_>) -> bool {
    node.kind().ends_with("_statement")
        || node.kind() == "function_definition"
        || node.kind() == "decorated_definition"
}

impl<'t> Sites<'t> {
    pub(crate) fn collect(root: Node<'t>, source: &str, regions: &[Range<usize>]) -> Self {
        let mut sites = Sites {
            root,
            operators: Vec::new(),
            numbers: Vec::new(),
            expressions: Vec::new(),
            all_expressions: Vec::new(),
            blocks: Vec::new(),
        };
        python::walk_all(root, &mut |node| {
            let inside = python::within_regions(regions, &node.byte_range());
            let kind = node.kind();
            if EXPRESSION_KINDS.contains(&kind) && python::is_value_position(node, source) {
                sites.all_expressions.push(node);
                if inside {
                    sites.expressions.push(node);
                }
            }
            if !inside {
                return;
            }
            if !node.is_named()
                && let Some(parent) = node.parent()
            {
                {
                    let operator_role = matches!(
                        parent.kind(),
                        "binary_operator"
                            | "comparison_operator"
                            | "boolean_operator"
                            | "augmented_assignment"
                    );
                    if operator_role && operator_family(kind).is_some() {
                        sites.operators.push(node);
                    }
                }
            }
            if matches!(kind, "integer" | "float") {
                sites.numbers.push(node);
            }
            if matches!(kind, "block" | "module") {
                let mut cursor = node.walk();
                let statements: Vec<Node<'t>> = node
                    .named_children(&mut cursor)
                    .filter(|child| is_statement(*child))
                    .filter(|child| python::within_regions(regions, &child.byte_range()))
                    .filter(|child| statement_is_alone_on_its_lines(*child, source))
                    .collect();
                if !statements.is_empty() {
                    sites.blocks.push(statements);
                }
            }
        });
        sites
    }
}

fn statement_is_alone_on_its_lines(statement: Node<'_>, source: &str) -> bool {
    let start = python::line_start(source, statement.start_byte());
    let before = &source[start..statement.start_byte()];
    let rest_of_line = source[statement.end_byte()..]
        .split('\n')
        .next()
        .unwrap_or("");
    before.chars().all(|c| c == ' ' || c == '\t')
        && (rest_of_line.trim().is_empty() || rest_of_line.trim_start().starts_with('#'))
}

/// The scope at `node` and its inferred type.
pub(crate) fn typed_at(sites: &Sites<'_>, node: Node<'_>, source: &str) -> (Scope, Ty) {
    let scope = python::scope_at(sites.root, node, source);
    let ty = python::infer(node, source, &scope);
    (scope, ty)
}

/// Picks a numeric expression site at random (rejection sampling over candidates).
pub(crate) fn pick_numeric_site<'t>(
    sites: &Sites<'t>,
    source: &str,
    rng: &mut impl Rng,
    accept: impl Fn(Node<'t>) -> bool,
) -> Option<(Node<'t>, Scope)> {
    let candidates: Vec<Node<'t>> = sites
        .expressions
        .iter()
        .copied()
        .filter(|node| accept(*node))
        .collect();
    for _ in 0..24 {
        let node = *candidates.choose(rng)?;
        let (scope, ty) = typed_at(sites, node, source);
        if ty.is_numeric() {
            return Some((node, scope));
        }
    }
    None
}

/// The grammar's vocabulary at a point: numeric variables in scope and the file's constants.
pub(crate) fn vocabulary(scope: &Scope, sites: &Sites<'_>, source: &str) -> Vocabulary {
    let names = |types: &[Ty]| -> Vec<String> {
        scope
            .of_types(types)
            .into_iter()
            .map(|binding| binding.name.clone())
            .filter(|name| !name.starts_with('_'))
            .collect()
    };
    let mut constants: Vec<f64> = sites
        .numbers
        .iter()
        .filter_map(|node| parse_number(python::text(*node, source)))
        .filter(|value| value.is_finite())
        .collect();
    constants.sort_by(f64::total_cmp);
    constants.dedup();
    Vocabulary {
        floats: names(&[Ty::Float]),
        ints: names(&[Ty::Int]),
        lists: names(&[Ty::NumList]),
        constants,
    }
}

fn parse_number(literal: &str) -> Option<f64> {
    let cleaned: String = literal.chars().filter(|c| *c != '_').collect();
    if cleaned.starts_with("0x")
        || cleaned.starts_with("0o")
        || cleaned.starts_with("0b")
        || cleaned.ends_with('j')
    {
        return None;
    }
    cleaned.parse::<f64>().ok()
}

/// True when an expression placed at `site` needs parentheses (unless it is atomic).
pub(crate) fn needs_parentheses(site: Node<'_>) -> bool {
    let Some(parent) = site.parent() else {
        return false;
    };
    !matches!(
        parent.kind(),
        "expression_statement"
            | "return_statement"
            | "assignment"
            | "augmented_assignment"
            | "argument_list"
            | "keyword_argument"
            | "parenthesized_expression"
            | "list"
            | "tuple"
            | "set"
            | "expression_list"
            | "list_comprehension"
            | "generator_expression"
            | "set_comprehension"
            | "default_parameter"
            | "typed_default_parameter"
    )
}

/// Renders `expr` for placement at `site`.
pub(crate) fn placed(expr: &Expr, site: Node<'_>) -> String {
    if needs_parentheses(site) {
        expr.wrapped()
    } else {
        expr.text.clone()
    }
}

fn at(path: &str, source: &str, node: Node<'_>) -> String {
    format!("{path}:{}", python::line_number(source, node.start_byte()))
}

fn shorten(text: &str) -> String {
    let single_line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if single_line.chars().count() > 60 {
        let cut: String = single_line.chars().take(57).collect();
        format!("{cut}...")
    } else {
        single_line
    }
}

// ---------------------------------------------------------------------------
// Operators

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MutationOperator {
    OperatorSwap,
    Constant,
    SubexprGrammar,
    SubexprProgram,
    Grow,
    Shrink,
    StatementDelete,
    StatementDuplicate,
    StatementSwap,
}

/// Proposes one edit of one file, or `None` when the drawn operator found no site.
pub(crate) fn propose_edit(
    path: &str,
    source: &str,
    weights: &OperatorWeights,
    rng: &mut impl Rng,
) -> Option<Edit> {
    let tree = python::parse(source).ok()?;
    let regions = python::editable_regions(source).ok()?;
    let sites = Sites::collect(tree.root_node(), source, &regions);
    let has_statements = sites.blocks.iter().any(|block| !block.is_empty());
    let has_pairs = sites.blocks.iter().any(|block| block.len() >= 2);
    let options = [
        (
            MutationOperator::OperatorSwap,
            weights.operator,
            !sites.operators.is_empty(),
        ),
        (
            MutationOperator::Constant,
            weights.constant,
            !sites.numbers.is_empty(),
        ),
        (
            MutationOperator::SubexprGrammar,
            weights.subexpr_grammar,
            !sites.expressions.is_empty(),
        ),
        (
            MutationOperator::SubexprProgram,
            weights.subexpr_program,
            sites.all_expressions.len() >= 2,
        ),
        (
            MutationOperator::Grow,
            weights.grow,
            !sites.expressions.is_empty(),
        ),
        (
            MutationOperator::Shrink,
            weights.shrink,
            !sites.expressions.is_empty(),
        ),
        (
            MutationOperator::StatementDelete,
            weights.statement_delete,
            has_pairs,
        ),
        (
            MutationOperator::StatementDuplicate,
            weights.statement_duplicate,
            has_statements,
        ),
        (
            MutationOperator::StatementSwap,
            weights.statement_swap,
            has_pairs,
        ),
    ];
    let available: Vec<(MutationOperator, f64)> = options
        .iter()
        .filter(|(_, weight, possible)| *possible && *weight > 0.0 && weight.is_finite())
        .map(|(operator, weight, _)| (*operator, *weight))
        .collect();
    let (operator, _) = *available.choose_weighted(rng, |(_, weight)| *weight).ok()?;
    apply_operator(operator, path, source, &sites, rng)
}

fn apply_operator(
    operator: MutationOperator,
    path: &str,
    source: &str,
    sites: &Sites<'_>,
    rng: &mut impl Rng,
) -> Option<Edit> {
    match operator {
        MutationOperator::OperatorSwap => mutate_operator(path, source, sites, rng),
        MutationOperator::Constant => mutate_constant(path, source, sites, rng),
        MutationOperator::SubexprGrammar => replace_with_grammar(path, source, sites, rng),
        MutationOperator::SubexprProgram => {
            replace_with_program_expression(path, source, sites, rng)
        }
        MutationOperator::Grow => grow_expression(path, source, sites, rng),
        MutationOperator::Shrink => shrink_expression(path, source, sites, rng),
        MutationOperator::StatementDelete => delete_statement(path, source, sites, rng),
        MutationOperator::StatementDuplicate => duplicate_statement(path, source, sites, rng),
        MutationOperator::StatementSwap => swap_statements(path, source, sites, rng),
    }
}

fn mutate_operator(
    path: &str,
    source: &str,
    sites: &Sites<'_>,
    rng: &mut impl Rng,
) -> Option<Edit> {
    let token = *sites.operators.choose(rng)?;
    let current = python::text(token, source);
    let family = operator_family(current)?;
    let choices: Vec<&&str> = family
        .iter()
        .filter(|candidate| **candidate != current)
        .collect();
    let replacement = **choices.choose(rng)?;
    Some(Edit {
        range: token.byte_range(),
        replacement: replacement.to_string(),
        kind: "mutate:operator",
        summary: format!(
            "changed operator {current} -> {replacement} at {}",
            at(path, source, token)
        ),
    })
}

fn mutate_constant(
    path: &str,
    source: &str,
    sites: &Sites<'_>,
    rng: &mut impl Rng,
) -> Option<Edit> {
    let literal = *sites.numbers.choose(rng)?;
    let literal_text = python::text(literal, source);
    let magnitude = parse_number(literal_text)?;
    // `-1.0` is a unary minus over `1.0`: mutate the signed value as a whole.
    let negated_parent = literal.parent().filter(|parent| {
        parent.kind() == "unary_operator"
            && parent
                .child_by_field_name("operator")
                .is_some_and(|op| python::text(op, source) == "-")
    });
    let site = negated_parent.unwrap_or(literal);
    let value = if negated_parent.is_some() {
        -magnitude
    } else {
        magnitude
    };
    let is_int = literal.kind() == "integer";
    let in_exponent = site.parent().is_some_and(|parent| {
        parent.kind() == "binary_operator"
            && parent
                .child_by_field_name("operator")
                .is_some_and(|op| python::text(op, source) == "**")
            && parent.child_by_field_name("right") == Some(site)
    });
    let int_context = !python::is_value_position(site, source);
    let new_value = if in_exponent {
        *[1.0, 2.0, 3.0, 4.0]
            .iter()
            .filter(|candidate| **candidate != value)
            .collect::<Vec<_>>()
            .choose(rng)
            .copied()?
    } else if int_context {
        if !is_int {
            return None;
        }
        let candidates = [
            value + 1.0,
            value - 1.0,
            value * 2.0,
            (value / 2.0).floor(),
            0.0,
            1.0,
        ];
        *candidates
            .iter()
            .filter(|c| **c != value && **c >= 0.0)
            .collect::<Vec<_>>()
            .choose(rng)
            .copied()?
    } else {
        let program_constants: Vec<f64> = sites
            .numbers
            .iter()
            .filter_map(|node| parse_number(python::text(*node, source)))
            .filter(|candidate| *candidate != magnitude)
            .collect();
        let draw = rng.gen_range(0..100);
        match draw {
            0..35 => {
                let factor = 1.0 + rng.gen_range(-0.35..0.35);
                if value == 0.0 {
                    rng.gen_range(-1.0..1.0)
                } else {
                    value * factor
                }
            }
            35..55 => value * [0.5, 2.0, 0.1, 10.0].choose(rng).copied().unwrap_or(2.0),
            55..65 => -value,
            65..80 => [0.0, 1.0, 2.0, -1.0, 3.0, 5.0, 10.0]
                .choose(rng)
                .copied()
                .unwrap_or(1.0),
            80..90 if !program_constants.is_empty() => {
                program_constants.choose(rng).copied().unwrap_or(1.0)
            }
            _ => grammar::round_significant(10f64.powf(rng.gen_range(-2.0..3.0)), 2),
        }
    };
    let as_int = is_int && new_value.fract() == 0.0;
    let expr = grammar::number_expr(new_value, as_int);
    let replacement = placed(&expr, site);
    let old = python::text(site, source);
    if replacement == old || (in_exponent && expr.text.starts_with('-')) {
        return None;
    }
    Some(Edit {
        range: site.byte_range(),
        replacement: replacement.clone(),
        kind: "mutate:constant",
        summary: format!(
            "changed constant {old} -> {replacement} at {}",
            at(path, source, site)
        ),
    })
}

fn replace_with_grammar(
    path: &str,
    source: &str,
    sites: &Sites<'_>,
    rng: &mut impl Rng,
) -> Option<Edit> {
    let (site, scope) = pick_numeric_site(sites, source, rng, |_| true)?;
    let vocabulary = vocabulary(&scope, sites, source);
    let depth = if rng.gen_bool(0.5) { 1 } else { 2 };
    let expr = vocabulary.expr(rng, depth);
    replacement_edit(
        path,
        source,
        site,
        &expr,
        "mutate:subexpr-grammar",
        "replaced",
    )
}

fn replacement_edit(
    path: &str,
    source: &str,
    site: Node<'_>,
    expr: &Expr,
    kind: &'static str,
    verb: &str,
) -> Option<Edit> {
    let old = python::text(site, source);
    let replacement = placed(expr, site);
    if replacement == old || expr.text == old {
        return None;
    }
    Some(Edit {
        range: site.byte_range(),
        replacement: replacement.clone(),
        kind,
        summary: format!(
            "{verb} {} -> {} at {}",
            shorten(old),
            shorten(&replacement),
            at(path, source, site)
        ),
    })
}

fn replace_with_program_expression(
    path: &str,
    source: &str,
    sites: &Sites<'_>,
    rng: &mut impl Rng,
) -> Option<Edit> {
    let (site, scope) = pick_numeric_site(sites, source, rng, |_| true)?;
    let site_text = python::text(site, source);
    for _ in 0..24 {
        let donor = *sites.all_expressions.choose(rng)?;
        let donor_text = python::text(donor, source);
        if donor_text == site_text || python::encloses(donor, site) {
            continue;
        }
        let (_, donor_type) = typed_at(sites, donor, source);
        if !donor_type.is_numeric() {
            continue;
        }
        let free = python::free_identifiers(donor, source);
        if !free.iter().all(|name| scope.contains(name)) {
            continue;
        }
        let expr = Expr {
            text: donor_text.to_string(),
            atomic: !COMPOUND_KINDS.contains(&donor.kind())
                || donor.kind() == "call"
                || donor.kind() == "parenthesized_expression",
        };
        return replacement_edit(
            path,
            source,
            site,
            &expr,
            "mutate:subexpr-program",
            "reused",
        );
    }
    None
}

fn grow_expression(
    path: &str,
    source: &str,
    sites: &Sites<'_>,
    rng: &mut impl Rng,
) -> Option<Edit> {
    // Mostly grow a whole right-hand side or returned value: wrapping
    // the complete quantity (`score - c * window`) is the change that most
    // often reshapes a heuristic, and leaves are already drawn often enough.
    let outermost_only = rng.gen_bool(0.6);
    let (site, scope) = pick_numeric_site(sites, source, rng, |node| {
        !outermost_only || is_outermost_expression(node)
    })
    .or_else(|| pick_numeric_site(sites, source, rng, |_| true))?;
    let vocabulary = vocabulary(&scope, sites, source);
    let old = python::text(site, source);
    let current = Expr {
        text: old.to_string(),
        atomic: !COMPOUND_KINDS.contains(&site.kind())
            || matches!(site.kind(), "call" | "parenthesized_expression"),
    };
    let depth = if rng.gen_bool(0.7) { 0 } else { 1 };
    let other = vocabulary.expr(rng, depth);
    let grown = match rng.gen_range(0..100) {
        0..30 => {
            let operator = ["+", "-", "*", "/"].choose(rng).copied().unwrap_or("+");
            if rng.gen_bool(0.6) {
                grammar::binary(&current, operator, &other)
            } else {
                grammar::binary(&other, operator, &current)
            }
        }
        30..38 => grammar::negate(&current),
        38..45 => Expr {
            text: format!(
                "{} ** {}",
                current.wrapped(),
                if rng.gen_bool(0.7) { 2 } else { 3 }
            ),
            atomic: false,
        },
        45..55 => {
            let function = if rng.gen_bool(0.5) { "min" } else { "max" };
            Expr {
                text: format!("{function}({}, {})", current.text, other.text),
                atomic: true,
            }
        }
        55..57 => Expr {
            text: format!("abs({})", current.text),
            atomic: true,
        },
        57..90 => {
            // A bonus or penalty inside a window of some quantity (e.g. the gap left in a bin).
            let amount = grammar::number_expr(vocabulary.amount(rng), false);
            let operator = if rng.gen_bool(0.7) { "-" } else { "+" };
            Expr {
                text: format!(
                    "{} {operator} {} * {}",
                    current.wrapped(),
                    amount.wrapped(),
                    vocabulary.window(rng)
                ),
                atomic: false,
            }
        }
        _ => {
            let condition = vocabulary.condition(rng);
            if rng.gen_bool(0.5) {
                grammar::conditional(&current, &condition, &other)
            } else {
                grammar::conditional(&other, &condition, &current)
            }
        }
    };
    replacement_edit(path, source, site, &grown, "mutate:grow", "grew")
}

/// True when no expression encloses `node` (it is a whole value: a right-hand side, a returned value, an argument).
fn is_outermost_expression(node: Node<'_>) -> bool {
    node.parent()
        .is_none_or(|parent| !EXPRESSION_KINDS.contains(&parent.kind()))
}

fn shrink_expression(
    path: &str,
    source: &str,
    sites: &Sites<'_>,
    rng: &mut impl Rng,
) -> Option<Edit> {
    let (site, _) = pick_numeric_site(sites, source, rng, |node| {
        COMPOUND_KINDS.contains(&node.kind())
    })?;
    let parts: Vec<Node<'_>> = sites
        .expressions
        .iter()
        .copied()
        .filter(|part| part.id() != site.id() && python::encloses(site, *part))
        .collect();
    for _ in 0..12 {
        let part = *parts.choose(rng)?;
        let (_, ty) = typed_at(sites, part, source);
        if !ty.is_numeric() {
            continue;
        }
        let expr = Expr {
            text: python::text(part, source).to_string(),
            atomic: !COMPOUND_KINDS.contains(&part.kind())
                || matches!(part.kind(), "call" | "parenthesized_expression"),
        };
        return replacement_edit(path, source, site, &expr, "mutate:shrink", "simplified");
    }
    None
}

fn deletable(statement: Node<'_>) -> bool {
    !matches!(
        statement.kind(),
        "return_statement"
            | "function_definition"
            | "decorated_definition"
            | "import_statement"
            | "import_from_statement"
    )
}

fn full_lines(source: &str, statement: Node<'_>) -> Range<usize> {
    let start = python::line_start(source, statement.start_byte());
    let end = source[statement.end_byte()..]
        .find('\n')
        .map_or(source.len(), |at| statement.end_byte() + at + 1);
    start..end
}

fn delete_statement(
    path: &str,
    source: &str,
    sites: &Sites<'_>,
    rng: &mut impl Rng,
) -> Option<Edit> {
    let block = sites
        .blocks
        .iter()
        .filter(|block| block.len() >= 2)
        .collect::<Vec<_>>()
        .choose(rng)
        .copied()?;
    let candidates: Vec<&Node<'_>> = block
        .iter()
        .filter(|statement| deletable(**statement))
        .collect();
    let statement = **candidates.choose(rng)?;
    Some(Edit {
        range: full_lines(source, statement),
        replacement: String::new(),
        kind: "mutate:statement-delete",
        summary: format!(
            "deleted `{}` at {}",
            shorten(python::text(statement, source)),
            at(path, source, statement)
        ),
    })
}

fn duplicate_statement(
    path: &str,
    source: &str,
    sites: &Sites<'_>,
    rng: &mut impl Rng,
) -> Option<Edit> {
    let block = sites.blocks.choose(rng)?;
    let candidates: Vec<&Node<'_>> = block
        .iter()
        .filter(|statement| deletable(**statement))
        .collect();
    let statement = **candidates.choose(rng)?;
    let lines = full_lines(source, statement);
    let mut copy = source[lines.clone()].to_string();
    if !copy.ends_with('\n') {
        copy.insert(0, '\n');
    }
    Some(Edit {
        range: lines.end..lines.end,
        replacement: copy,
        kind: "mutate:statement-duplicate",
        summary: format!(
            "duplicated `{}` at {}",
            shorten(python::text(statement, source)),
            at(path, source, statement)
        ),
    })
}

fn swap_statements(
    path: &str,
    source: &str,
    sites: &Sites<'_>,
    rng: &mut impl Rng,
) -> Option<Edit> {
    let block = sites
        .blocks
        .iter()
        .filter(|block| block.len() >= 2)
        .collect::<Vec<_>>()
        .choose(rng)
        .copied()?;
    let movable: Vec<Node<'_>> = block
        .iter()
        .copied()
        .filter(|statement| statement.kind() != "return_statement")
        .collect();
    if movable.len() < 2 {
        return None;
    }
    let first_index = rng.gen_range(0..movable.len() - 1);
    let (first, second) = (movable[first_index], movable[first_index + 1]);
    let first_text = python::text(first, source);
    let second_text = python::text(second, source);
    if first_text == second_text {
        return None;
    }
    let between = &source[first.end_byte()..second.start_byte()];
    Some(Edit {
        range: first.start_byte()..second.end_byte(),
        replacement: format!("{second_text}{between}{first_text}"),
        kind: "mutate:statement-swap",
        summary: format!(
            "swapped `{}` and `{}` at {}",
            shorten(first_text),
            shorten(second_text),
            at(path, source, first)
        ),
    })
}

/// Re-indents a statement taken from column `from` so that it starts at column `to`.
pub(crate) fn reindent(text: &str, from: usize, to: usize) -> String {
    let mut lines = text.split('\n');
    let mut out = lines.next().unwrap_or("").to_string();
    for line in lines {
        out.push('\n');
        let leading = line.len() - line.trim_start_matches([' ', '\t']).len();
        let strip = leading.min(from);
        if line.trim().is_empty() {
            continue;
        }
        out.push_str(&" ".repeat(to));
        out.push_str(&line[strip..]);
    }
    out
}

#[cfg(test)]
#[path = "mutate_tests.rs"]
mod tests;
