//! The OpenAPI document's structural rules that code generators rely on:
//! path parameters match the path template and operation ids are unique.
//! (tests/openapi.sh also runs an independent validator and a generated
//! client against a real server.)

use std::collections::{BTreeMap, BTreeSet};

use axum::http::StatusCode;
use serde_json::Value;
use sqlx::PgPool;

use crate::common::TestApp;

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

async fn document(pool: PgPool) -> Value {
    let app = TestApp::new(pool).await;
    let resp = app.get_page("/api/openapi.json", None).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    resp.json()
}

/// The names between braces in a path template: `{id}` in `/changes/{id}`.
fn template_names(path: &str) -> BTreeSet<String> {
    path.split('{')
        .skip(1)
        .filter_map(|rest| rest.split_once('}').map(|(name, _)| name.to_owned()))
        .collect()
}

/// A parameter object, following a `$ref` into `components/parameters`.
fn resolve<'a>(doc: &'a Value, param: &'a Value) -> &'a Value {
    match param["$ref"].as_str() {
        Some(r) => {
            let name = r
                .strip_prefix("#/components/parameters/")
                .unwrap_or_else(|| panic!("unexpected parameter reference {r}"));
            &doc["components"]["parameters"][name]
        }
        None => param,
    }
}

/// Every operation as (method, path, operation object).
fn operations(doc: &Value) -> Vec<(String, String, &Value)> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in METHODS {
            if let Some(op) = item.get(method) {
                out.push((method.to_uppercase(), path.clone(), op));
            }
        }
    }
    out
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn path_parameters_are_exactly_the_path_templates_names(pool: PgPool) {
    let doc = document(pool).await;
    let mut problems = Vec::new();
    for (method, path, op) in operations(&doc) {
        let in_template = template_names(&path);
        let item_params = doc["paths"][&path]["parameters"].as_array();
        let op_params = op["parameters"].as_array();
        let mut declared = BTreeSet::new();
        for param in item_params.into_iter().chain(op_params).flatten() {
            let param = resolve(&doc, param);
            let name = param["name"].as_str().unwrap_or_default().to_owned();
            let location = param["in"].as_str().unwrap_or_default();
            if !["path", "query", "header", "cookie"].contains(&location) {
                problems.push(format!("{method} {path}: '{name}' is in '{location}'"));
            }
            if location != "path" {
                continue;
            }
            if !in_template.contains(&name) {
                problems.push(format!(
                    "{method} {path}: '{name}' is declared in: path but is not in the path"
                ));
            }
            if param["required"] != Value::Bool(true) {
                problems.push(format!(
                    "{method} {path}: path parameter '{name}' is not required"
                ));
            }
            declared.insert(name);
        }
        for missing in in_template.difference(&declared) {
            problems.push(format!(
                "{method} {path}: '{{{missing}}}' has no path parameter"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn every_operation_has_a_unique_operation_id(pool: PgPool) {
    let doc = document(pool).await;
    let mut seen: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (method, path, op) in operations(&doc) {
        let id = op["operationId"]
            .as_str()
            .unwrap_or_else(|| panic!("{method} {path} has no operationId"));
        seen.entry(id.to_owned())
            .or_default()
            .push(format!("{method} {path}"));
    }
    let duplicates: Vec<String> = seen
        .iter()
        .filter(|(_, ops)| ops.len() > 1)
        .map(|(id, ops)| format!("'{id}' is used by {}", ops.join(", ")))
        .collect();
    assert!(duplicates.is_empty(), "{}", duplicates.join("\n"));
}

#[sqlx::test(migrator = "cab_db::MIGRATOR")]
async fn the_change_list_filters_are_optional_query_parameters(pool: PgPool) {
    let doc = document(pool).await;
    let params = doc["paths"]["/api/v1/changes"]["get"]["parameters"]
        .as_array()
        .expect("list parameters");
    let located: BTreeMap<&str, (&str, &Value)> = params
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap_or_default(),
                (p["in"].as_str().unwrap_or_default(), &p["required"]),
            )
        })
        .collect();
    for name in [
        "state", "type", "risk", "category", "service", "author", "mine", "q", "sort", "cursor",
        "limit",
    ] {
        let (location, required) = located
            .get(name)
            .unwrap_or_else(|| panic!("no parameter '{name}': {located:?}"));
        assert_eq!(*location, "query", "{name}");
        assert_ne!(**required, Value::Bool(true), "{name} is optional");
    }
}
