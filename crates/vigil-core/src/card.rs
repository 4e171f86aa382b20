//! The structured model card: the seed's fields plus ONC HTI-1's 31 source attributes for
//! Predictive DSIs (45 CFR 170.315(b)(11)(iv)(B)), every field tri-state.
//!
//! A field is either a value, explicitly "not available" with a reason (HTI-1 lets a developer
//! say so), or missing. Only `missing` is a gap; the completeness report lists the gaps so that
//! the validation gate (a later issue) can refuse publication on them. Keys are stable strings
//! (`purpose.intended_use`); they are part of the signed content encoding, never rename one.

use crate::error::{Error, ErrorCode, Result};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

macro_rules! card_fields {
    ($( $variant:ident = $key:literal, $hti:expr, $label:literal; )*) => {
        /// Every model card field Vigil knows.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum CardField { $( #[doc = $label] $variant, )* }

        impl CardField {
            /// All fields in presentation order.
            pub const ALL: &'static [CardField] = &[$(CardField::$variant,)*];

            /// The stable key used in manifests, JSON and the content hash.
            pub fn key(self) -> &'static str {
                match self { $(CardField::$variant => $key,)* }
            }

            /// The HTI-1 attribute number (1–31) if this field is one of the 31.
            pub fn hti1(self) -> Option<u8> {
                match self { $(CardField::$variant => $hti,)* }
            }

            /// A plain-language label.
            pub fn label(self) -> &'static str {
                match self { $(CardField::$variant => $label,)* }
            }
        }
    };
}

card_fields! {
    ModelName = "model_name", None, "Model name";
    Description = "description", None, "Plain-language summary";
    ClinicalValidationStatus = "clinical_validation_status", None, "Clinical validation status";
    TrainingDataDescription = "training_data_description", None, "Training data description";
    EvaluationDataDescription = "evaluation_data_description", None, "Evaluation data description";
    EthicalConsiderations = "ethical_considerations", None, "Ethical considerations";
    RegulatoryStatus = "regulatory_status", None, "Regulatory status";
    Developer = "details.developer", Some(1), "Name and contact information for the intervention developer";
    FundingSource = "details.funding_source", Some(2), "Funding source of the intervention's technical implementation";
    OutputValue = "details.output_value", Some(3), "Value the intervention produces as an output";
    OutputType = "details.output_type", Some(4), "Whether the output is a prediction, classification, recommendation, evaluation, analysis or other";
    IntendedUse = "purpose.intended_use", Some(5), "Intended use of the intervention";
    PatientPopulation = "purpose.patient_population", Some(6), "Intended patient population(s)";
    IntendedUsers = "purpose.intended_users", Some(7), "Intended user(s)";
    DecisionRole = "purpose.decision_role", Some(8), "Intended decision-making role (informs, augments, replaces)";
    CautionedUses = "out_of_scope.cautioned_uses", Some(9), "Tasks, situations or populations where use is cautioned against";
    KnownRisksLimitations = "out_of_scope.known_risks_limitations", Some(10), "Known risks, inappropriate settings or uses, known limitations";
    InclusionExclusion = "development.inclusion_exclusion", Some(11), "Inclusion and exclusion criteria that influenced the training data";
    DemographicInputs = "development.demographic_inputs", Some(12), "Use of demographic variables as input features";
    TrainingRepresentativeness = "development.training_representativeness", Some(13), "Demographic representativeness of the training data";
    TrainingRelevance = "development.training_relevance", Some(14), "Relevance of training data to the intended deployed setting";
    FairnessApproach = "fairness.approach", Some(15), "Approach taken to ensure the output is fair";
    BiasMitigation = "fairness.bias_mitigation", Some(16), "Approaches to manage, reduce or eliminate bias";
    ExternalValidationSetting = "external_validation.setting", Some(17), "Data source, clinical setting or environment of external validation";
    ExternalValidationParty = "external_validation.party", Some(18), "Party that conducted the external testing";
    ExternalValidationRepresentativeness = "external_validation.representativeness", Some(19), "Demographic representativeness of the external data";
    ExternalValidationProcess = "external_validation.process", Some(20), "Description of the external validation process";
    InternalValidity = "performance.internal_validity", Some(21), "Validity in test data from the same source as the training data";
    InternalFairness = "performance.internal_fairness", Some(22), "Fairness in test data from the same source as the training data";
    ExternalValidity = "performance.external_validity", Some(23), "Validity in data from a different source than the training data";
    ExternalFairness = "performance.external_fairness", Some(24), "Fairness in external data";
    OutcomeEvaluations = "performance.outcome_evaluations", Some(25), "References to evaluations of the intervention's effect on outcomes";
    ValidityMonitoring = "maintenance.validity_monitoring", Some(26), "Process and frequency by which validity is monitored";
    LocalValidity = "maintenance.local_validity", Some(27), "Validity in local data";
    FairnessMonitoring = "maintenance.fairness_monitoring", Some(28), "Process and frequency by which fairness is monitored";
    LocalFairness = "maintenance.local_fairness", Some(29), "Fairness in local data";
    UpdateProcessFrequency = "update.process_frequency", Some(30), "Process and frequency by which the intervention is updated";
    CorrectionFrequency = "update.correction_frequency", Some(31), "Frequency by which performance is corrected when risks are identified";
}

/// Short names from the original system's `ModelCard` accepted on input for HTI-1 keys.
const ALIASES: &[(&str, CardField)] = &[
    ("intended_use", CardField::IntendedUse),
    ("intended_users", CardField::IntendedUsers),
    ("patient_population", CardField::PatientPopulation),
    ("out_of_scope_uses", CardField::CautionedUses),
    ("limitations", CardField::KnownRisksLimitations),
    ("developer", CardField::Developer),
    ("funding_source", CardField::FundingSource),
    ("fairness_approach", CardField::FairnessApproach),
    ("bias_mitigation", CardField::BiasMitigation),
];

impl CardField {
    /// Looks a field up by its key or one of the seed's short aliases.
    pub fn from_key(key: &str) -> Option<CardField> {
        CardField::ALL
            .iter()
            .copied()
            .find(|f| f.key() == key)
            .or_else(|| ALIASES.iter().find(|(a, _)| *a == key).map(|(_, f)| *f))
    }

    /// The 31 HTI-1 source attributes, in rule order.
    pub fn hti1_attributes() -> impl Iterator<Item = CardField> {
        CardField::ALL.iter().copied().filter(|f| f.hti1().is_some())
    }
}

/// The state of one card field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldStatus {
    /// The field has content.
    Value(String),
    /// The developer states the information is not available, and why.
    NotAvailable {
        /// Why it is not available.
        reason: String,
    },
}

const MAX_FIELD_CHARS: usize = 20_000;

/// A model card. Fields not present are `missing`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModelCard {
    fields: BTreeMap<CardField, FieldStatus>,
}

impl ModelCard {
    /// An empty card (every field missing).
    pub fn new() -> Self {
        ModelCard::default()
    }

    /// Sets a field's value. Blank text is rejected: say `not_available` instead.
    pub fn set(&mut self, field: CardField, value: &str) -> Result<&mut Self> {
        let v = crate::ids::required_text(field.key(), value, MAX_FIELD_CHARS)
            .map_err(|e| Error::new(ErrorCode::InvalidModelCard, e.message().to_owned()))?;
        self.fields.insert(field, FieldStatus::Value(v));
        Ok(self)
    }

    /// Marks a field as not available, with a required reason.
    pub fn set_not_available(&mut self, field: CardField, reason: &str) -> Result<&mut Self> {
        let r = crate::ids::required_text(&format!("{} not-available reason", field.key()), reason, MAX_FIELD_CHARS)
            .map_err(|e| Error::new(ErrorCode::InvalidModelCard, e.message().to_owned()))?;
        self.fields.insert(field, FieldStatus::NotAvailable { reason: r });
        Ok(self)
    }

    /// A field's state; `None` means missing.
    pub fn get(&self, field: CardField) -> Option<&FieldStatus> {
        self.fields.get(&field)
    }

    /// The HTI-1 attributes that are missing (neither value nor not-available).
    pub fn missing_hti1(&self) -> Vec<CardField> {
        CardField::hti1_attributes().filter(|f| !self.fields.contains_key(f)).collect()
    }

    /// Fields with a state, in key order.
    pub fn entries(&self) -> impl Iterator<Item = (CardField, &FieldStatus)> {
        self.fields.iter().map(|(k, v)| (*k, v))
    }

    /// The card as JSON: `{"key": {"value": "..."}, "key2": {"not_available": "reason"}}`.
    /// This shape is part of the signed content encoding.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        for (f, s) in &self.fields {
            let mut inner = Map::new();
            match s {
                FieldStatus::Value(v) => inner.insert("value".into(), Value::String(v.clone())),
                FieldStatus::NotAvailable { reason } => inner.insert("not_available".into(), Value::String(reason.clone())),
            };
            m.insert(f.key().to_owned(), Value::Object(inner));
        }
        Value::Object(m)
    }

    /// Parses a card from JSON. Each key may hold a plain string (a value), `{"value": s}` or
    /// `{"not_available": reason}`; seed aliases such as `intended_use` are accepted.
    pub fn from_json(v: &Value) -> Result<Self> {
        let obj = v
            .as_object()
            .ok_or_else(|| Error::new(ErrorCode::InvalidModelCard, "model card must be an object of field keys"))?;
        let mut card = ModelCard::new();
        for (k, val) in obj {
            let field = CardField::from_key(k)
                .ok_or_else(|| Error::new(ErrorCode::InvalidModelCard, format!("unknown model card field {}", crate::ids::quote_key(k))))?;
            if card.fields.contains_key(&field) {
                return Err(Error::new(ErrorCode::InvalidModelCard, format!("model card field '{}' given twice", field.key())));
            }
            match val {
                Value::String(s) => {
                    card.set(field, s)?;
                }
                Value::Object(o) if o.len() == 1 => match (o.get("value"), o.get("not_available")) {
                    (Some(Value::String(s)), None) => {
                        card.set(field, s)?;
                    }
                    (None, Some(Value::String(r))) => {
                        card.set_not_available(field, r)?;
                    }
                    _ => return Err(bad_shape(k)),
                },
                _ => return Err(bad_shape(k)),
            }
        }
        Ok(card)
    }
}

fn bad_shape(k: &str) -> Error {
    Error::new(
        ErrorCode::InvalidModelCard,
        format!("model card field {} must be a string, {{\"value\": string}} or {{\"not_available\": reason}}", crate::ids::quote_key(k)),
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn exactly_31_hti1_attributes_numbered_in_order() {
        let nums: Vec<u8> = CardField::hti1_attributes().filter_map(CardField::hti1).collect();
        assert_eq!(nums, (1..=31).collect::<Vec<_>>());
    }

    #[test]
    fn tri_state_round_trip_and_missing_report() {
        let card = ModelCard::from_json(&json!({
            "model_name": "Diabetes Risk Classifier",
            "intended_use": "Identify patients at risk for Type 2 diabetes",
            "external_validation.party": {"not_available": "no external validation yet"},
        }))
        .unwrap();
        assert_eq!(card.get(CardField::IntendedUse), Some(&FieldStatus::Value("Identify patients at risk for Type 2 diabetes".into())));
        assert_eq!(card.missing_hti1().len(), 29);
        assert_eq!(ModelCard::from_json(&card.to_json()).unwrap(), card);
    }

    #[test]
    fn rejects_unknown_blank_and_mistyped_fields() {
        for bad in [json!({"nope": "x"}), json!({"model_name": " "}), json!({"model_name": 3}), json!({"model_name": {"value": "a", "not_available": "b"}}), json!([]), json!({"intended_use": "a", "purpose.intended_use": "b"})] {
            assert_eq!(ModelCard::from_json(&bad).unwrap_err().code(), ErrorCode::InvalidModelCard, "{bad}");
        }
    }
}
