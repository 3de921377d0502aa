//! The todo-api example: a JSON API over the key-value store, behind JWT-protected routes.
//!
//! Every route names the host's authorizer `todo` (`[authorizers.todo]` in `examples/edgefn.toml`): the host
//! verifies the bearer token before this code runs, and hands over its claims. Each user's todos live under keys
//! built from the token's `sub`, so one user can never list, read or change another's.
//!
//! | route | scope | what |
//! |---|---|---|
//! | `GET /me` | any | the verified claims of your token |
//! | `GET /todos` | `todos:read` or `todos:write` | the caller's todos, oldest first |
//! | `POST /todos` `{"title": "..."}` | `todos:write` | create one (201); an `Idempotency-Key` header makes retries safe for 24 h |
//! | `POST /todos/{id}/complete` | `todos:write` | mark one done |
//! | `DELETE /todos/{id}` | `todos:write` | delete one (204) |
//!
//! ```text
//! TOKEN=$(edgefn token mint --config examples/edgefn.toml --authorizer todo --sub ada --scope todos:write)
//! curl -H "authorization: Bearer $TOKEN" localhost:8080/todos -d '{"title": "buy milk"}'
//! curl -H "authorization: Bearer $TOKEN" localhost:8080/todos
//! ```

use edgefn::kv::Store;
use edgefn::prelude::*;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The store this component is granted (`key_value_stores = ["todos"]`).
const STORE: &str = "todos";
/// How long a retried `POST /todos` with the same `Idempotency-Key` returns the first result.
const IDEMPOTENCY_TTL: Duration = Duration::from_secs(24 * 60 * 60);

/// A todo, as stored and as returned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Todo {
    pub id: u64,
    pub title: String,
    pub done: bool,
}

#[derive(Debug, Deserialize)]
struct NewTodo {
    title: String,
}

/// The claims this API needs from a token.
#[derive(Debug, Deserialize)]
struct Claims {
    sub: String,
}

/// The caller, from the verified token.
struct User {
    /// `sub`, escaped so it cannot end a key prefix early (see [`escape`]).
    key: String,
}

impl User {
    // ANCHOR: user_from
    fn from(req: &Request) -> Result<Self> {
        let claims: Claims = req.claims_as()?;
        if claims.sub.is_empty() {
            return Err(Error::new(403, "the token's `sub` is empty"));
        }
        Ok(Self { key: escape(&claims.sub) })
    }
    // ANCHOR_END: user_from

    fn todos_prefix(&self) -> String {
        format!("todo:{}:", self.key)
    }

    fn todo_key(&self, id: u64) -> String {
        // Zero-padded so keys list in creation order.
        format!("todo:{}:{id:020}", self.key)
    }

    fn sequence_key(&self) -> String {
        format!("seq:{}", self.key)
    }

    fn idempotency_key(&self, key: &str) -> String {
        format!("idem:{}:{}", self.key, escape(key))
    }
}

/// `:` separates the parts of a key: a `sub` of `ada:1` must not read as user `ada`'s todo 1, so `%` and `:` are
/// percent-escaped.
pub fn escape(part: &str) -> String {
    part.replace('%', "%25").replace(':', "%3A")
}

// ANCHOR: me
/// Who the token says you are: its verified claims, as the host passed them.
#[function(trigger = http("/me", auth = "todo"))]
fn me(req: Request) -> Result<Response> {
    let claims = req.claims().ok_or_else(|| Error::new(401, "no verified token"))?;
    Response::json(claims)
}
// ANCHOR_END: me

// ANCHOR: list_todos
#[function(trigger = http("/todos", method = "GET", auth = "todo", scopes = ["todos:read", "todos:write"]))]
fn list_todos(req: Request) -> Result<Response> {
    let user = User::from(&req)?;
    let store = Store::open(STORE)?;
    let mut todos = Vec::new();
    let mut cursor = None;
    loop {
        let page = store.list(&user.todos_prefix(), cursor.as_deref(), 100)?;
        for key in &page.keys {
            // A todo deleted between the listing and the read is simply gone.
            if let Some(todo) = store.get_json::<Todo>(key)? {
                todos.push(todo);
            }
        }
        match page.cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    Response::json(&serde_json::json!({ "todos": todos }))
}
// ANCHOR_END: list_todos

// ANCHOR: create_todo
#[function(trigger = http("/todos", method = "POST", auth = "todo", scopes = ["todos:write"]))]
fn create_todo(req: Request) -> Result<Response> {
    let user = User::from(&req)?;
    let new: NewTodo = req.json()?;
    let title = new.title.trim();
    if title.is_empty() || title.len() > 500 {
        return Err(Error::bad_request("`title` must be 1 to 500 bytes"));
    }
    let store = Store::open(STORE)?;
    let id = store.increment(&user.sequence_key(), 1)?;
    if let Some(idempotency_key) = req.header("idempotency-key") {
        // Claim the key for this id, atomically: of two concurrent retries exactly one wins, and the other
        // returns what the winner created.
        let claim = user.idempotency_key(idempotency_key);
        let claimed = store.compare_and_swap_with_ttl(&claim, None, id.to_string(), IDEMPOTENCY_TTL)?;
        if claimed.is_none() {
            let first = store
                .get(&claim)?
                .and_then(|id| String::from_utf8(id).ok()?.parse::<u64>().ok())
                .ok_or_else(|| Error::new(409, "this Idempotency-Key is in use; retry"))?;
            let todo = store
                .get_json::<Todo>(&user.todo_key(first))?
                .ok_or_else(|| Error::new(409, "the todo this Idempotency-Key created is gone"))?;
            return Ok(Response::json(&todo)?.with_header("idempotent-replayed", "true"));
        }
    }
    let todo = Todo { id, title: title.to_owned(), done: false };
    store.set_json(&user.todo_key(id), &todo)?;
    Ok(Response::json(&todo)?.with_status(201))
}
// ANCHOR_END: create_todo

// ANCHOR: complete_todo
#[function(trigger = http("/todos/{id}/complete", method = "POST", auth = "todo", scopes = ["todos:write"]))]
fn complete_todo(req: Request) -> Result<Response> {
    let user = User::from(&req)?;
    let key = user.todo_key(todo_id(&req)?);
    let store = Store::open(STORE)?;
    // Read, change, write only if nobody wrote in between; otherwise read again. No update is lost.
    loop {
        let Some((bytes, version)) = store.get_versioned(&key)? else {
            return Err(Error::not_found("no such todo"));
        };
        let mut todo: Todo = serde_json::from_slice(&bytes).map_err(|e| Error::internal(format!("bad todo: {e}")))?;
        todo.done = true;
        let encoded = serde_json::to_vec(&todo).map_err(|e| Error::internal(e.to_string()))?;
        if store.compare_and_swap(&key, Some(version), encoded)?.is_some() {
            return Response::json(&todo);
        }
    }
}
// ANCHOR_END: complete_todo

#[function(trigger = http("/todos/{id}", method = "DELETE", auth = "todo", scopes = ["todos:write"]))]
fn delete_todo(req: Request) -> Result<Response> {
    let user = User::from(&req)?;
    let key = user.todo_key(todo_id(&req)?);
    let store = Store::open(STORE)?;
    if !store.exists(&key)? {
        return Err(Error::not_found("no such todo"));
    }
    store.delete(&key)?;
    Ok(Response::new(204))
}

fn todo_id(req: &Request) -> Result<u64> {
    req.param("id")
        .and_then(|id| id.parse().ok())
        .ok_or_else(|| Error::bad_request("the todo id must be a whole number"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use edgefn::testing::{self, call, request};
    use serde_json::json;

    // ANCHOR: as_user
    fn as_user(method: &str, uri: &str, sub: &str) -> testing::TestRequest {
        request(method, uri).claims(json!({ "sub": sub, "scope": "todos:write" }))
    }
    // ANCHOR_END: as_user

    fn todos(sub: &str) -> Vec<Todo> {
        let response = call(as_user("GET", "/todos", sub));
        assert_eq!(response.status(), 200, "{}", response.text_body());
        let body: serde_json::Value = serde_json::from_str(&response.text_body()).unwrap();
        serde_json::from_value(body["todos"].clone()).unwrap()
    }

    // ANCHOR: access_table
    /// `access.json` is the table of who may do what; `tests/all/state.rs` runs the same table on a real host with
    /// signed tokens. Both must see every status it lists, so a scope rule that passes here passes on a host.
    #[test]
    fn the_access_table_holds_natively() {
        testing::kv_clear();
        let table: Vec<serde_json::Value> = serde_json::from_str(include_str!("../access.json")).unwrap();
        for row in &table {
            let case = row["case"].as_str().unwrap();
            let mut request = request(row["method"].as_str().unwrap(), row["path"].as_str().unwrap());
            if let Some(token) = row["token"].as_object() {
                let mut claims = json!({ "sub": "table" });
                claims.as_object_mut().unwrap().extend(token.clone());
                request = request.claims(claims);
            }
            if let Some(body) = row.get("body") {
                request = request.json(body);
            }
            let response = call(request);
            assert_eq!(
                u64::from(response.status()),
                row["status"].as_u64().unwrap(),
                "{case}: {}",
                response.text_body()
            );
            if let Some(error) = row.get("error").and_then(|e| e.as_str()) {
                assert!(response.text_body().contains(error), "{case}: {}", response.text_body());
            }
        }
    }
    // ANCHOR_END: access_table

    #[test]
    fn create_list_complete_delete() {
        testing::kv_clear();
        let created = call(as_user("POST", "/todos", "ada").json(&json!({"title": "buy milk"})));
        assert_eq!(created.status(), 201, "{}", created.text_body());
        call(as_user("POST", "/todos", "ada").json(&json!({"title": "write tests"})));
        let listed = todos("ada");
        assert_eq!(listed.iter().map(|t| t.title.as_str()).collect::<Vec<_>>(), ["buy milk", "write tests"]);

        let done = call(as_user("POST", &format!("/todos/{}/complete", listed[0].id), "ada"));
        assert_eq!(done.status(), 200);
        assert!(todos("ada")[0].done);

        assert_eq!(call(as_user("DELETE", &format!("/todos/{}", listed[0].id), "ada")).status(), 204);
        assert_eq!(todos("ada").len(), 1);
        assert_eq!(call(as_user("DELETE", &format!("/todos/{}", listed[0].id), "ada")).status(), 404);
    }

    #[test]
    fn users_never_see_each_other() {
        testing::kv_clear();
        call(as_user("POST", "/todos", "ada").json(&json!({"title": "ada's"})));
        // A `sub` that would extend ada's key prefix if it were not escaped.
        call(as_user("POST", "/todos", "ada:00000000000000000001").json(&json!({"title": "mallory's"})));
        assert_eq!(todos("ada").len(), 1);
        assert_eq!(todos("bob"), []);
        let id = todos("ada")[0].id;
        assert_eq!(call(as_user("DELETE", &format!("/todos/{id}"), "bob")).status(), 404);
        assert_eq!(todos("ada").len(), 1);
    }

    #[test]
    fn a_retried_create_with_the_same_idempotency_key_creates_once() {
        testing::kv_clear();
        let create =
            || call(as_user("POST", "/todos", "ada").header("idempotency-key", "k-1").json(&json!({"title": "once"})));
        let first = create();
        let second = create();
        assert_eq!((first.status(), second.status()), (201, 200));
        assert_eq!(first.text_body(), second.text_body());
        assert_eq!(todos("ada").len(), 1);
    }

    // ANCHOR: no_token
    #[test]
    fn without_a_verified_token_nothing_runs() {
        testing::kv_clear();
        let response = call(request("POST", "/todos").json(&json!({"title": "sneaky"})));
        assert_eq!(response.status(), 401);
        assert_eq!(todos("ada"), []);
    }
    // ANCHOR_END: no_token
}
