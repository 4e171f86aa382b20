//! The OpenAPI 3.1 document (`/api/v1/openapi.json`) and an offline docs page (`/api/v1/docs`),
//! generated from the same tables the router is built from: [`crate::native::OPERATIONS`]
//! and [`crate::mlflow::ROUTES`], and the error catalogue from [`vigil_core::ErrorCode::ALL`].
//! The docs page is plain HTML (no scripts, no CDN), so it works without network access.

use crate::native::OPERATIONS;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

fn path_params(path: &str) -> Vec<&str> {
    path.split('/').filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}'))).collect()
}

/// The document.
pub fn build() -> Value {
    let mut paths = Map::new();
    for op in OPERATIONS {
        let mut params: Vec<Value> = path_params(op.path).iter().map(|p| json!({"name": p, "in": "path", "required": true, "schema": {"type": "string"}})).collect();
        params.extend(op.query.iter().map(|(n, t)| json!({"name": n, "in": "query", "required": false, "schema": {"type": t}})));
        let mut o = json!({
            "summary": op.summary,
            "description": format!("Who: {}.", op.who),
            "operationId": format!("{}{}", op.method, op.path.replace(['/', '{', '}'], "_")),
            "parameters": params,
            "responses": {
                "200": {"description": "OK", "content": {"application/json": {"schema": {"type": "object"}}}},
                "default": {"description": "An error from the catalogue", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
            },
        });
        if !op.body.is_empty() {
            let props: Map<String, Value> = op.body.iter().map(|(n, t, _)| ((*n).to_owned(), json!({"type": t}))).collect();
            let required: Vec<&str> = op.body.iter().filter(|(_, _, r)| *r).map(|(n, _, _)| *n).collect();
            o["requestBody"] = json!({"required": true, "content": {"application/json": {"schema": {"type": "object", "properties": props, "required": required}}}});
        }
        o["security"] = if op.auth { json!([{"basic": []}, {"bearer": []}]) } else { json!([]) };
        let entry = paths.entry(format!("/api/v1{}", op.path)).or_insert_with(|| json!({}));
        entry[op.method] = o;
    }
    for (method, path, _) in crate::mlflow::ROUTES {
        let m = method.to_ascii_lowercase();
        let entry = paths.entry(format!("/api/2.0/mlflow/{path}")).or_insert_with(|| json!({}));
        entry[m.as_str()] = json!({
            "summary": format!("MLflow {path} (as MLflow 3.17; see mlflow-api.md)"),
            "tags": ["mlflow"],
            "responses": {
                "200": {"description": "OK", "content": {"application/json": {"schema": {"type": "object"}}}},
                "default": {"description": "MLflow error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/MlflowError"}}}},
            },
            "security": [{"basic": []}, {"bearer": []}],
        });
    }
    let codes: Vec<&str> = vigil_core::ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Vigil API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Governed model registry, Part 11 approvals, audit trail and MLflow-compatible experiment tracking.",
        },
        "paths": paths,
        "components": {
            "securitySchemes": {"basic": {"type": "http", "scheme": "basic"}, "bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {
                    "type": "object",
                    "properties": {"error": {"type": "object", "properties": {
                        "code": {"type": "string", "enum": codes},
                        "message": {"type": "string"},
                        "status": {"type": "integer"},
                    }, "required": ["code", "message", "status"]}},
                    "required": ["error"],
                },
                "MlflowError": {"type": "object", "properties": {"error_code": {"type": "string"}, "message": {"type": "string"}}, "required": ["error_code", "message"]},
            },
        },
    })
}

/// `GET /api/v1/openapi.json`.
pub async fn document() -> Response {
    axum::Json(build()).into_response()
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// `GET /api/v1/docs`: every operation and the error catalogue, as one self-contained page.
pub async fn docs() -> Response {
    let mut html = String::from(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Vigil API</title><style>\
         body{font:14px/1.5 system-ui,sans-serif;max-width:70rem;margin:2rem auto;padding:0 1rem}\
         code{background:#f3f3f3;padding:0 .2rem}table{border-collapse:collapse;width:100%}\
         td,th{border-bottom:1px solid #ddd;padding:.3rem .5rem;text-align:left;vertical-align:top}\
         .m{font-weight:bold;text-transform:uppercase}</style></head><body><h1>Vigil API</h1>\
         <p>Machine-readable: <a href=\"openapi.json\">openapi.json</a> (OpenAPI 3.1). Authenticate with HTTP Basic \
         (user and password) or <code>Authorization: Bearer vgt_…</code> from <code>POST /api/v1/auth/login</code> or \
         <code>POST /api/v1/tokens</code>.</p><h2>Operations</h2><table><tr><th>Method</th><th>Path</th><th>What</th><th>Who</th><th>Body</th></tr>",
    );
    for op in OPERATIONS {
        let body: Vec<String> = op.body.iter().map(|(n, t, r)| format!("<code>{}</code>: {}{}", esc(n), t, if *r { "" } else { " (optional)" })).collect();
        html.push_str(&format!(
            "<tr><td class=\"m\">{}</td><td><code>/api/v1{}</code></td><td>{}</td><td>{}</td><td>{}</td></tr>",
            op.method,
            esc(op.path),
            esc(op.summary),
            esc(op.who),
            body.join("<br>")
        ));
    }
    html.push_str("</table><h2>MLflow-compatible routes</h2><p>Served as MLflow 3.17 serves them, under <code>/api/2.0/mlflow/</code>:</p><ul>");
    for (m, p, _) in crate::mlflow::ROUTES {
        html.push_str(&format!("<li><code>{m} {}</code></li>", esc(p)));
    }
    html.push_str("</ul><h2>Error catalogue</h2><table><tr><th>Code</th><th>HTTP status</th></tr>");
    for (code, status) in vigil_api::error_catalogue() {
        html.push_str(&format!("<tr><td><code>{}</code></td><td>{status}</td></tr>", code.as_str()));
    }
    html.push_str("</table></body></html>");
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response()
}
