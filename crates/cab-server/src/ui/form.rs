//! Form plumbing shared by every page with a form: the submitted fields as
//! name/value pairs, the messages shown beside fields and summarised on top
//! of a re-shown form, and the options of a select or a set of checkboxes.

use std::collections::BTreeMap;

use crate::error::AppError;

/// A form's fields in order, repeated names (checkboxes) included.
pub(super) type FormPairs = Vec<(String, String)>;

/// Every value submitted under `key`.
pub(super) fn form_values<'a>(pairs: &'a FormPairs, key: &str) -> Vec<&'a str> {
    pairs
        .iter()
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .collect()
}

/// The first value submitted under `key`, or empty.
pub(super) fn form_value(pairs: &FormPairs, key: &str) -> String {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.clone())
        .unwrap_or_default()
}

/// One line of the error summary on top of a re-shown form.
pub(super) struct ErrorLink {
    /// The id of the field's element.
    pub target: String,
    pub label: String,
    pub message: String,
}

/// Messages shown beside form fields, keyed by field name.
#[derive(Default, Debug)]
pub(super) struct FieldErrors(BTreeMap<String, String>);

impl FieldErrors {
    pub fn get(&self, field: &str) -> Option<&String> {
        self.0.get(field)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn insert(&mut self, field: &str, message: impl Into<String>) {
        self.0.insert(field.to_owned(), message.into());
    }

    /// Adds `other`'s messages for fields that have none yet.
    pub fn merge(&mut self, other: FieldErrors) {
        for (field, message) in other.0 {
            self.0.entry(field).or_insert(message);
        }
    }

    /// The summary on top of a re-shown form: each error with the label of
    /// its field, in the order `fields` (name, label) gives, which is the
    /// form's. A summary line links to the element whose id is the field's
    /// name. Errors of fields not listed come last, under their own name.
    pub fn summary<'a>(&self, fields: impl AsRef<[(&'a str, &'a str)]>) -> Vec<ErrorLink> {
        let mut out = Vec::new();
        let mut listed = Vec::new();
        for &(field, label) in fields.as_ref() {
            if let Some(message) = self.0.get(field) {
                out.push(ErrorLink {
                    target: field.to_owned(),
                    label: label.to_owned(),
                    message: message.clone(),
                });
            }
            listed.push(field);
        }
        for (field, message) in &self.0 {
            if !listed.contains(&field.as_str()) {
                let mut label = field.replace('_', " ");
                if let Some(first) = label.get(..1) {
                    label = first.to_uppercase() + &label[1..];
                }
                out.push(ErrorLink {
                    target: field.clone(),
                    label,
                    message: message.clone(),
                });
            }
        }
        out
    }

    /// A validation or conflict error becomes a message beside its field;
    /// anything else is not a form error and is handed back.
    pub fn absorb(err: AppError, conflict_field: &str) -> Result<Self, AppError> {
        let mut errors = FieldErrors::default();
        match err {
            AppError::Invalid { field, message } => errors.insert(&field, message),
            AppError::Fields(list) => {
                for (field, message) in list {
                    errors.0.entry(field).or_insert(message);
                }
            }
            AppError::Conflict(d) => errors.insert(conflict_field, d.message),
            other => return Err(other),
        }
        Ok(errors)
    }
}

pub(super) fn checked(pairs: &FormPairs, key: &str) -> bool {
    !form_value(pairs, key).is_empty()
}

pub(super) struct Choice {
    pub value: &'static str,
    pub label: &'static str,
    pub selected: bool,
}

pub(super) fn choices<T: Copy + PartialEq>(
    all: &[T],
    current: &[T],
    f: impl Fn(T) -> (&'static str, &'static str),
) -> Vec<Choice> {
    all.iter()
        .map(|v| {
            let (value, label) = f(*v);
            Choice {
                value,
                label,
                selected: current.contains(v),
            }
        })
        .collect()
}

/// Choices whose selected one is named by its text (a query parameter).
pub(super) fn selected_by_text<T: Copy>(
    all: &[T],
    now: &str,
    f: impl Fn(T) -> (&'static str, &'static str),
) -> Vec<Choice> {
    all.iter()
        .map(|v| {
            let (value, label) = f(*v);
            Choice {
                value,
                label,
                selected: value == now,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_error_summary_follows_the_form_and_names_each_field() {
        let mut errors = FieldErrors::default();
        errors.insert("likelihood", "Choose the likelihood.");
        errors.insert("impact", "Choose the impact.");
        errors.insert("odd_one", "Something else.");
        let lines: Vec<_> = errors
            .summary([("impact", "Impact"), ("likelihood", "Likelihood")])
            .into_iter()
            .map(|l| format!("{} {}: {}", l.target, l.label, l.message))
            .collect();
        assert_eq!(
            lines,
            [
                "impact Impact: Choose the impact.",
                "likelihood Likelihood: Choose the likelihood.",
                "odd_one Odd one: Something else."
            ]
        );
    }
}
