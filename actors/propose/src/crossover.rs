//! Crossover: recombining a parent with a donor version from the archive.
//!
//! Two archive versions often improved different parts of a program; a child
//! that takes some of each can combine the gains. Four granularities: changed
//! line hunks between the two (uniform crossover on the diff, natural for
//! relatives), a whole function, one statement, or one numeric subexpression
//! (whose variables must be in scope where it lands).

use rand::Rng;
use rand::seq::SliceRandom;
use similar::{Algorithm, DiffOp, capture_diff_slices};

use crate::grammar::Expr;
use crate::mutate::{self, EvolvableFile, Sites};
use crate::proposer::Proposal;
use crate::python;
use crate::tree::{CodeTree, FilePolicy};

/// One crossover child, or `None` when this draw found nothing valid (the caller retries).
pub(crate) fn recombine(
    parent: &CodeTree,
    donor: &CodeTree,
    files: &[EvolvableFile],
    policy: &FilePolicy,
    rng: &mut impl Rng,
) -> Option<Proposal> {
    let related: Vec<(&EvolvableFile, String)> = files
        .iter()
        .filter(|file| policy.is_evolvable(&file.path))
        .filter_map(|file| donor.text(&file.path).map(|text| (file, text.to_string())))
        .filter(|(_, donor_source)| python::parse_strict(donor_source).is_ok())
        .collect();
    if related.is_empty() {
        return None;
    }
    let draw = rng.gen_range(0..100);
    if draw < 35 {
        return crossover_hunks(parent, &related, rng);
    }
    let (file, donor_source) = related.choose(rng)?;
    let (kind, summary, child) = match draw {
        35..70 => crossover_subexpression(file, donor_source, rng)?,
        70..90 => crossover_statement(file, donor_source, rng)?,
        _ => crossover_function(file, donor_source, rng)?,
    };
    if !mutate::acceptable_child(&file.source, &child) {
        return None;
    }
    let mut files_out = parent.clone();
    files_out.insert(file.path.clone(), child.into_bytes());
    Some(Proposal {
        files: files_out,
        kind: kind.to_string(),
        summary,
    })
}

fn crossover_hunks(
    parent: &CodeTree,
    related: &[(&EvolvableFile, String)],
    rng: &mut impl Rng,
) -> Option<Proposal> {
    struct Change<'a> {
        file: usize,
        op: DiffOp,
        parent_lines: Vec<&'a str>,
        donor_lines: Vec<&'a str>,
    }
    let mut changes = Vec::new();
    let mut per_file_lines = Vec::new();
    for (index, (file, donor_source)) in related.iter().enumerate() {
        let parent_lines: Vec<&str> = file.source.split_inclusive('\n').collect();
        let donor_lines: Vec<&str> = donor_source.split_inclusive('\n').collect();
        let ops = capture_diff_slices(Algorithm::Myers, &parent_lines, &donor_lines);
        for op in &ops {
            if !matches!(op, DiffOp::Equal { .. }) {
                changes.push(Change {
                    file: index,
                    op: *op,
                    parent_lines: parent_lines[op.old_range()].to_vec(),
                    donor_lines: donor_lines[op.new_range()].to_vec(),
                });
            }
        }
        per_file_lines.push((parent_lines, ops));
    }
    if changes.is_empty() {
        return None;
    }
    let mut take: Vec<bool> = changes.iter().map(|_| rng.gen_bool(0.5)).collect();
    if !take.iter().any(|taken| *taken) {
        let index = rng.gen_range(0..take.len());
        take[index] = true;
    }
    if take.len() > 1 && take.iter().all(|taken| *taken) {
        let index = rng.gen_range(0..take.len());
        take[index] = false;
    }
    let mut child_tree = parent.clone();
    let mut taken_hunks = 0;
    let mut files_touched = Vec::new();
    for (index, (parent_lines, ops)) in per_file_lines.iter().enumerate() {
        let mut child = String::new();
        let mut touched = false;
        for op in ops {
            if let DiffOp::Equal { .. } = op {
                child.extend(parent_lines[op.old_range()].iter().copied());
                continue;
            }
            let position = changes
                .iter()
                .position(|change| change.file == index && change.op == *op)?;
            if take[position] {
                child.extend(changes[position].donor_lines.iter().copied());
                touched = true;
                taken_hunks += 1;
            } else {
                child.extend(changes[position].parent_lines.iter().copied());
            }
        }
        let file = related[index].0;
        if touched {
            if !mutate::acceptable_child(&file.source, &child) {
                return None;
            }
            files_touched.push(file.path.clone());
            child_tree.insert(file.path.clone(), child.into_bytes());
        }
    }
    if child_tree == *parent {
        return None;
    }
    Some(Proposal {
        files: child_tree,
        kind: "crossover:hunks".into(),
        summary: format!(
            "took {taken_hunks} of {} differing hunks from the donor in {}",
            changes.len(),
            files_touched.join(", ")
        ),
    })
}

fn crossover_subexpression(
    file: &EvolvableFile,
    donor_source: &str,
    rng: &mut impl Rng,
) -> Option<(&'static str, String, String)> {
    let tree = python::parse(&file.source).ok()?;
    let regions = python::editable_regions(&file.source).ok()?;
    let sites = Sites::collect(tree.root_node(), &file.source, &regions);
    let donor_tree = python::parse(donor_source).ok()?;
    let donor_regions = python::editable_regions(donor_source).ok()?;
    let donor_sites = Sites::collect(donor_tree.root_node(), donor_source, &donor_regions);
    let (site, scope) = mutate::pick_numeric_site(&sites, &file.source, rng, |_| true)?;
    let site_text = python::text(site, &file.source);
    for _ in 0..32 {
        let candidate = *donor_sites.expressions.choose(rng)?;
        let candidate_text = python::text(candidate, donor_source);
        if candidate_text == site_text {
            continue;
        }
        let (_, ty) = mutate::typed_at(&donor_sites, candidate, donor_source);
        if !ty.is_numeric() {
            continue;
        }
        if !python::free_identifiers(candidate, donor_source)
            .iter()
            .all(|name| scope.contains(name))
        {
            continue;
        }
        let atomic = !matches!(
            candidate.kind(),
            "binary_operator" | "unary_operator" | "conditional_expression"
        );
        let expr = Expr {
            text: candidate_text.to_string(),
            atomic,
        };
        let edit_text = mutate::placed(&expr, site);
        let child = format!(
            "{}{}{}",
            &file.source[..site.start_byte()],
            edit_text,
            &file.source[site.end_byte()..]
        );
        let line = python::line_number(&file.source, site.start_byte());
        let summary = format!(
            "took `{}` from the donor for `{}` at {}:{line}",
            short(candidate_text),
            short(site_text),
            file.path
        );
        return Some(("crossover:subexpr", summary, child));
    }
    None
}

fn statements<'t>(sites: &Sites<'t>) -> Vec<tree_sitter::Node<'t>> {
    sites.blocks.iter().flatten().copied().collect()
}

/// What makes two statements counterparts: their kind, and for assignments
/// and calls what they assign or call (`score = ...` matches `score = ...`).
fn statement_shape(statement: tree_sitter::Node<'_>, source: &str) -> String {
    let mut shape = statement.kind().to_string();
    if statement.kind() == "expression_statement"
        && let Some(inner) = statement.named_child(0)
    {
        {
            shape.push(':');
            shape.push_str(inner.kind());
            let head = match inner.kind() {
                "assignment" | "augmented_assignment" => inner.child_by_field_name("left"),
                "call" => inner.child_by_field_name("function"),
                _ => None,
            };
            if let Some(head) = head {
                shape.push(':');
                shape.push_str(python::text(head, source));
            }
        }
    }
    shape
}

fn crossover_statement(
    file: &EvolvableFile,
    donor_source: &str,
    rng: &mut impl Rng,
) -> Option<(&'static str, String, String)> {
    let tree = python::parse(&file.source).ok()?;
    let regions = python::editable_regions(&file.source).ok()?;
    let sites = Sites::collect(tree.root_node(), &file.source, &regions);
    let donor_tree = python::parse(donor_source).ok()?;
    let donor_regions = python::editable_regions(donor_source).ok()?;
    let donor_sites = Sites::collect(donor_tree.root_node(), donor_source, &donor_regions);
    let target = *statements(&sites).choose(rng)?;
    let target_text = python::text(target, &file.source);
    let same_kind: Vec<_> = statements(&donor_sites)
        .into_iter()
        .filter(|candidate| {
            statement_shape(*candidate, donor_source) == statement_shape(target, &file.source)
                && python::text(*candidate, donor_source) != target_text
        })
        .collect();
    let donor_statement = *same_kind.choose(rng)?;
    let donor_text = python::text(donor_statement, donor_source);
    let moved = mutate::reindent(
        donor_text,
        donor_statement.start_position().column,
        target.start_position().column,
    );
    let child = format!(
        "{}{}{}",
        &file.source[..target.start_byte()],
        moved,
        &file.source[target.end_byte()..]
    );
    let line = python::line_number(&file.source, target.start_byte());
    let summary = format!(
        "took statement `{}` from the donor for `{}` at {}:{line}",
        short(donor_text),
        short(target_text),
        file.path
    );
    Some(("crossover:statement", summary, child))
}

fn crossover_function(
    file: &EvolvableFile,
    donor_source: &str,
    rng: &mut impl Rng,
) -> Option<(&'static str, String, String)> {
    let tree = python::parse(&file.source).ok()?;
    let regions = python::editable_regions(&file.source).ok()?;
    let donor_tree = python::parse(donor_source).ok()?;
    let mut parent_functions = Vec::new();
    python::walk_all(tree.root_node(), &mut |node| {
        if node.kind() == "function_definition"
            && python::within_regions(&regions, &node.byte_range())
        {
            parent_functions.push(node);
        }
    });
    let mut donor_functions = Vec::new();
    python::walk_all(donor_tree.root_node(), &mut |node| {
        if node.kind() == "function_definition" {
            donor_functions.push(node);
        }
    });
    let name_of = |node: tree_sitter::Node<'_>, source: &str| -> String {
        node.child_by_field_name("name")
            .map(|name| python::text(name, source).to_string())
            .unwrap_or_default()
    };
    let pairs: Vec<_> = parent_functions
        .iter()
        .flat_map(|parent_function| {
            donor_functions
                .iter()
                .filter(|donor_function| {
                    name_of(**donor_function, donor_source)
                        == name_of(*parent_function, &file.source)
                        && python::text(**donor_function, donor_source)
                            != python::text(*parent_function, &file.source)
                })
                .map(move |donor_function| (*parent_function, *donor_function))
        })
        .collect();
    let (target, donor_function) = *pairs.choose(rng)?;
    let moved = mutate::reindent(
        python::text(donor_function, donor_source),
        donor_function.start_position().column,
        target.start_position().column,
    );
    let child = format!(
        "{}{}{}",
        &file.source[..target.start_byte()],
        moved,
        &file.source[target.end_byte()..]
    );
    let summary = format!(
        "took function `{}` from the donor in {}",
        name_of(target, &file.source),
        file.path
    );
    Some(("crossover:function", summary, child))
}

fn short(text: &str) -> String {
    let single_line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if single_line.chars().count() > 60 {
        format!("{}...", single_line.chars().take(57).collect::<String>())
    } else {
        single_line
    }
}

/// Test hook: one function-level crossover with a given seed.
#[cfg(test)]
pub(crate) fn tests_support_function(
    file: &EvolvableFile,
    donor_source: &str,
    seed: u64,
) -> Option<(&'static str, String, String)> {
    use rand::SeedableRng;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    crossover_function(file, donor_source, &mut rng)
}
