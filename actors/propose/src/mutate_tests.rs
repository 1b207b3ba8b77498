//! Tests of the mutation operators and of the proposer's guarantees.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::*;
use crate::proposer::ProposalRequest;
use crate::tree::CodeTree;

const BINPACK_SEED: &str = r#""""The evolvable heuristic for online bin packing."""


def priority(item: float, bins: list[float]) -> list[float]:
    # EVOLVE-BLOCK-START
    scores = []
    for b in bins:
        score = 1.0
        scores.append(score)
    return scores
    # EVOLVE-BLOCK-END
"#;

const PLAIN: &str = "def f(x: float, ys: list[float]) -> float:\n    total = 0.0\n    for y in ys:\n        if y < 2.5 and x > 1:\n            total += y * x - 3\n        count = 1\n    return total\n";

fn whole(source: &str) -> Vec<Range<usize>> {
    std::iter::once(0..source.len()).collect()
}

fn first_edit(source: &str, operator: MutationOperator) -> Edit {
    let tree = python::parse(source).expect("parse");
    let regions = python::editable_regions(source).expect("regions");
    let sites = Sites::collect(tree.root_node(), source, &regions);
    for seed in 0..500 {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        if let Some(edit) = apply_operator(operator, "m.py", source, &sites, &mut rng) {
            let child = edit.apply(source);
            if acceptable_child(source, &child) {
                return edit;
            }
        }
    }
    panic!("{operator:?} produced no valid edit");
}

fn request(files: &[(&str, &str)], seed: u64) -> ProposalRequest {
    ProposalRequest::new(
        CodeTree::from_texts(files.iter().copied()),
        vec!["*.py".into()],
        vec!["pack.py".into()],
        seed,
    )
}

#[test]
fn operator_mutation_swaps_within_the_family() {
    let edit = first_edit(PLAIN, MutationOperator::OperatorSwap);
    assert_eq!(edit.kind, "mutate:operator");
    let old = &PLAIN[edit.range.clone()];
    let family = operator_family(old).expect("family");
    assert!(
        family.contains(&edit.replacement.as_str()),
        "{old} -> {}",
        edit.replacement
    );
    assert_ne!(old, edit.replacement);
    let mut seen = std::collections::BTreeSet::new();
    let tree = python::parse(PLAIN).unwrap();
    let sites = Sites::collect(tree.root_node(), PLAIN, &whole(PLAIN));
    for seed in 0..300 {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        if let Some(edit) = mutate_operator("m.py", PLAIN, &sites, &mut rng) {
            seen.insert(PLAIN[edit.range.clone()].to_string());
        }
    }
    for token in ["<", ">", "and", "+=", "*", "-"] {
        assert!(
            seen.contains(token),
            "operator {token} never mutated: {seen:?}"
        );
    }
}

#[test]
fn constant_mutation_changes_one_number() {
    let edit = first_edit(PLAIN, MutationOperator::Constant);
    assert_eq!(edit.kind, "mutate:constant");
    assert!(PLAIN[edit.range.clone()].parse::<f64>().is_ok());
    let new_value: f64 = edit
        .replacement
        .trim_matches(['(', ')'])
        .parse()
        .expect("a number");
    assert!(new_value.is_finite());
    assert!(
        edit.summary.starts_with("changed constant "),
        "{}",
        edit.summary
    );
    // Exponents stay small positive integers, so a power never turns complex.
    let power = "def f(x: float) -> float:\n    return x ** 2\n";
    for seed in 0..50 {
        let tree = python::parse(power).unwrap();
        let sites = Sites::collect(tree.root_node(), power, &whole(power));
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        if let Some(edit) = mutate_constant("m.py", power, &sites, &mut rng) {
            assert!(
                ["1", "3", "4"].contains(&edit.replacement.as_str()),
                "{}",
                edit.replacement
            );
        }
    }
}

#[test]
fn statement_operators_delete_duplicate_and_swap() {
    let source =
        "def f(x: float) -> float:\n    a = x + 1\n    b = x * 2\n    c = a - b\n    return c\n";
    let delete = first_edit(source, MutationOperator::StatementDelete);
    let child = delete.apply(source);
    assert_eq!(child.lines().count(), source.lines().count() - 1);
    assert!(
        child.contains("return c"),
        "return statements are never deleted"
    );
    let duplicate = first_edit(source, MutationOperator::StatementDuplicate);
    let child = duplicate.apply(source);
    assert_eq!(child.lines().count(), source.lines().count() + 1);
    let copied = source
        .lines()
        .find(|line| child.matches(&format!("{line}\n")).count() == 2);
    assert!(copied.is_some(), "{child}");
    let swap = first_edit(source, MutationOperator::StatementSwap);
    let child = swap.apply(source);
    let mut sorted_parent: Vec<&str> = source.lines().collect();
    let mut sorted_child: Vec<&str> = child.lines().collect();
    sorted_parent.sort();
    sorted_child.sort();
    assert_eq!(sorted_parent, sorted_child);
    assert_ne!(child, source);
    assert!(child.trim_end().ends_with("return c"));
}

#[test]
fn grammar_replacement_uses_only_variables_in_scope() {
    for seed in 0..40 {
        let tree = python::parse(BINPACK_SEED).unwrap();
        let regions = python::editable_regions(BINPACK_SEED).unwrap();
        let sites = Sites::collect(tree.root_node(), BINPACK_SEED, &regions);
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let Some(edit) = replace_with_grammar("p.py", BINPACK_SEED, &sites, &mut rng) else {
            continue;
        };
        assert_eq!(edit.kind, "mutate:subexpr-grammar");
        let child = edit.apply(BINPACK_SEED);
        assert!(python::parse_strict(&child).is_ok(), "{child}");
        let child_tree = python::parse(&child).unwrap();
        let mut node = child_tree
            .root_node()
            .descendant_for_byte_range(edit.range.start, edit.range.start + edit.replacement.len())
            .unwrap();
        while python::text(node, &child) != edit.replacement.as_str() {
            node = node.parent().expect("replacement node");
        }
        let scope = python::scope_at(child_tree.root_node(), node, &child);
        for name in python::free_identifiers(node, &child) {
            assert!(
                scope.contains(&name),
                "{name} not in scope in {}",
                edit.replacement
            );
        }
    }
}

#[test]
fn program_reuse_grow_and_shrink() {
    let reuse = first_edit(PLAIN, MutationOperator::SubexprProgram);
    assert_eq!(reuse.kind, "mutate:subexpr-program");
    let reused = reuse
        .replacement
        .trim_start_matches('(')
        .trim_end_matches(')');
    assert!(PLAIN.contains(reused), "`{reused}` is not from the program");
    let grow = first_edit(PLAIN, MutationOperator::Grow);
    assert!(
        grow.replacement.contains(&PLAIN[grow.range.clone()]),
        "{grow:?}"
    );
    assert!(grow.replacement.len() > grow.range.len());
    let shrink = first_edit(PLAIN, MutationOperator::Shrink);
    let old = &PLAIN[shrink.range.clone()];
    assert!(
        old.contains(shrink.replacement.trim_matches(['(', ')'])),
        "{old} -> {}",
        shrink.replacement
    );
    assert!(shrink.replacement.len() < old.len());
}

#[test]
fn children_respect_protected_files_and_markers() {
    let pack = "from priority import priority\nprint(priority(1.0, [2.0]))\n";
    let proposer = MutateProposer::default();
    for seed in 0..150 {
        let request = request(&[("priority.py", BINPACK_SEED), ("pack.py", pack)], seed);
        let proposal = proposer.propose_sync(&request).expect("a child");
        assert_eq!(proposal.files.text("pack.py"), Some(pack));
        let child = proposal.files.text("priority.py").unwrap();
        assert_ne!(child, BINPACK_SEED);
        assert!(python::parse_strict(child).is_ok(), "{child}");
        assert!(python::frozen_parts_equal(BINPACK_SEED, child), "{child}");
        assert!(child.starts_with("\"\"\"The evolvable heuristic"));
        assert!(child.contains("def priority(item: float, bins: list[float]) -> list[float]:\n    # EVOLVE-BLOCK-START\n"));
        assert!(!proposal.kind.is_empty() && !proposal.summary.is_empty());
    }
}

#[test]
fn same_seed_same_child_and_seeds_explore() {
    let proposer = MutateProposer::default();
    let first = proposer
        .propose_sync(&request(&[("p.py", BINPACK_SEED)], 42))
        .unwrap();
    let again = proposer
        .propose_sync(&request(&[("p.py", BINPACK_SEED)], 42))
        .unwrap();
    assert_eq!(first, again);
    let distinct: std::collections::BTreeSet<Vec<u8>> = (0..50)
        .map(|seed| {
            proposer
                .propose_sync(&request(&[("p.py", BINPACK_SEED)], seed))
                .unwrap()
                .files
                .get("p.py")
                .unwrap()
                .to_vec()
        })
        .collect();
    assert!(
        distinct.len() > 30,
        "only {} distinct children in 50 seeds",
        distinct.len()
    );
}

#[test]
fn no_evolvable_file_or_broken_parent_is_an_error() {
    let proposer = MutateProposer::default();
    let only_protected = request(&[("pack.py", "x = 1\n")], 1);
    assert!(matches!(
        proposer.propose_sync(&only_protected),
        Err(ProposeError::NoChangePossible(_))
    ));
    let broken = request(&[("p.py", "def f(:\n")], 1);
    assert!(matches!(
        proposer.propose_sync(&broken),
        Err(ProposeError::Parse { .. })
    ));
    let unbalanced = request(&[("p.py", "# EVOLVE-BLOCK-START\nx = 1\n")], 1);
    assert!(matches!(
        proposer.propose_sync(&unbalanced),
        Err(ProposeError::Markers { .. })
    ));
    let nothing_to_change = request(
        &[("p.py", "# EVOLVE-BLOCK-START\n# EVOLVE-BLOCK-END\nx = 1\n")],
        1,
    );
    assert!(matches!(
        proposer.propose_sync(&nothing_to_change),
        Err(ProposeError::NoChangePossible(_))
    ));
}

#[test]
fn crossover_takes_code_from_the_donor() {
    let donor_source = BINPACK_SEED
        .replace("score = 1.0", "score = -(b - item)")
        .replace("return scores", "return scores  # donor");
    let proposer = MutateProposer::new(MutateConfig {
        crossover_probability: 1.0,
        ..MutateConfig::default()
    });
    let mut kinds = std::collections::BTreeSet::new();
    for seed in 0..60 {
        let mut request = request(&[("p.py", BINPACK_SEED)], seed);
        request.donor = Some(CodeTree::from_texts([("p.py", donor_source.as_str())]));
        let proposal = proposer.propose_sync(&request).unwrap();
        let child = proposal.files.text("p.py").unwrap();
        assert!(python::parse_strict(child).is_ok());
        assert!(python::frozen_parts_equal(BINPACK_SEED, child));
        if proposal.kind.starts_with("crossover") {
            if proposal.kind == "crossover:subexpr" {
                let taken = proposal
                    .summary
                    .split('`')
                    .nth(1)
                    .expect("summary names the taken expression");
                assert!(donor_source.contains(taken), "{}", proposal.summary);
            } else {
                assert!(
                    child.contains("-(b - item)") || child.contains("# donor"),
                    "{}: {child}",
                    proposal.kind
                );
            }
            assert_ne!(
                child, donor_source,
                "a crossover child should not just copy the donor"
            );
            kinds.insert(proposal.kind);
        }
    }
    assert!(kinds.contains("crossover:hunks"), "{kinds:?}");
    assert!(kinds.contains("crossover:subexpr"), "{kinds:?}");
    assert!(kinds.contains("crossover:statement"), "{kinds:?}");
}

#[test]
fn crossover_of_whole_functions() {
    let parent = "def helper(x: float) -> float:\n    return x\n\n\ndef g(y: float) -> float:\n    return helper(y)\n";
    let donor = "def helper(x: float) -> float:\n    z = x * 2\n    return z + 1\n\n\ndef g(y: float) -> float:\n    return helper(y)\n";
    let files = [EvolvableFile {
        path: "h.py".into(),
        source: parent.into(),
        editable_bytes: parent.len(),
    }];
    let (kind, _, child) = (0..50)
        .find_map(|seed| crate::crossover::tests_support_function(&files[0], donor, seed))
        .expect("function crossover");
    assert_eq!(kind, "crossover:function");
    assert_eq!(child, donor);
}

#[test]
fn binpack_seed_reaches_best_fit_in_one_step() {
    let proposer = MutateProposer::default();
    let best_fit_like = (0..400).any(|seed| {
        let proposal = proposer
            .propose_sync(&request(&[("p.py", BINPACK_SEED)], seed))
            .unwrap();
        let child = proposal.files.text("p.py").unwrap().to_string();
        child.contains("score = -b\n")
            || child.contains("score = -(b - item)\n")
            || child.contains("score = item - b\n")
            || child.contains("score = 1.0 - b\n")
    });
    assert!(
        best_fit_like,
        "no Best Fit child in 400 proposals from the First Fit seed"
    );
}

#[tokio::test]
async fn proposer_trait_object_works() {
    let proposer: Box<dyn Proposer> = Box::new(MutateProposer::default());
    assert_eq!(proposer.name(), "mutate");
    let proposal = proposer
        .propose(&request(&[("p.py", BINPACK_SEED)], 3))
        .await
        .unwrap();
    assert!(proposal.kind.starts_with("mutate:"));
}
