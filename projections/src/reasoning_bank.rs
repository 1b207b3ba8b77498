//! The ReasoningBank: strategies that worked, with their win rates.

use std::collections::BTreeMap;

use dgm_events::{Event, Recorded};
use serde::{Deserialize, Serialize};

use crate::Projection;

#[derive(Debug)]
pub struct ReasoningBank;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StrategyRow {
    pub strategy_id: String,
    pub agent: String,
    pub kind: String,
    pub diagnosis: String,
    pub summary: String,
    pub stored_at: u64,
    pub uses: u64,
    pub wins: u64,
    pub win_rate: f64,
    pub pruned: bool,
    pub pruned_reason: Option<String>,
}

impl Projection for ReasoningBank {
    const NAME: &'static str = "reasoning_bank";
    type Row = StrategyRow;

    fn apply(rows: &mut BTreeMap<String, StrategyRow>, r: &Recorded) {
        match &r.event {
            Event::StrategyStored(e) => {
                rows.insert(
                    e.strategy_id.clone(),
                    StrategyRow {
                        strategy_id: e.strategy_id.clone(),
                        agent: e.agent.clone(),
                        kind: e.kind.clone(),
                        diagnosis: e.diagnosis.clone(),
                        summary: e.summary.clone(),
                        stored_at: r.position,
                        uses: 0,
                        wins: 0,
                        win_rate: 0.0,
                        pruned: false,
                        pruned_reason: None,
                    },
                );
            }
            Event::StrategyOutcomeRecorded(e) => {
                if let Some(s) = rows.get_mut(&e.strategy_id) {
                    s.uses += 1;
                    s.wins += u64::from(e.success);
                    s.win_rate = s.wins as f64 / s.uses as f64;
                }
            }
            Event::StrategyPruned(e) => {
                if let Some(s) = rows.get_mut(&e.strategy_id) {
                    s.pruned = true;
                    s.pruned_reason = Some(e.reason.clone());
                }
            }
            _ => {}
        }
    }
}
