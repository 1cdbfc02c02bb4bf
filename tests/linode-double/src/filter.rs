//! `X-Filter` as the API reads it: field equality (a list field matches when it holds the
//! value), `+and`, `+or`, `+gt` `+gte` `+lt` `+lte` `+contains` `+neq`, `+order_by`/`+order`;
//! a field that cannot be filtered on is a 400 naming `X-Filter`.

use std::cmp::Ordering;

use serde_json::Value;

/// The filter, checked against the fields `filterable` allows.
pub struct Filter {
    root: Value,
    order_by: Option<(String, bool)>,
}

impl Filter {
    pub fn parse(text: &str, filterable: &[&str]) -> Result<Filter, String> {
        let root: Value = serde_json::from_str(text).map_err(|_| "Invalid JSON in X-Filter".to_string())?;
        if !root.is_object() {
            return Err("X-Filter must be a JSON object".into());
        }
        let mut order_by = None;
        check(&root, filterable, &mut order_by)?;
        Ok(Filter { root, order_by })
    }

    pub fn matches(&self, item: &Value) -> bool {
        matches(&self.root, item)
    }

    pub fn sort(&self, items: &mut [&Value]) {
        if let Some((field, descending)) = &self.order_by {
            items.sort_by(|a, b| {
                let o = compare(field_of(a, field), field_of(b, field)).unwrap_or(Ordering::Equal);
                if *descending { o.reverse() } else { o }
            });
        }
    }
}

fn check(v: &Value, filterable: &[&str], order_by: &mut Option<(String, bool)>) -> Result<(), String> {
    let Value::Object(map) = v else { return Err("X-Filter: expected an object".into()) };
    let order = map.get("+order").and_then(Value::as_str).unwrap_or("asc") == "desc";
    for (k, v) in map {
        match k.as_str() {
            "+and" | "+or" => {
                let Value::Array(items) = v else { return Err(format!("{k} takes a list")) };
                for item in items {
                    check(item, filterable, order_by)?;
                }
            }
            "+order_by" => {
                let field = v.as_str().ok_or("+order_by takes a field name")?;
                if !filterable.contains(&field) {
                    return Err(format!("Cannot filter on {field}"));
                }
                *order_by = Some((field.to_string(), order));
            }
            "+order" => {}
            field if field.starts_with('+') => return Err(format!("Unknown operator {field}")),
            field => {
                if !filterable.contains(&field) {
                    return Err(format!("Cannot filter on {field}"));
                }
                if let Value::Object(ops) = v {
                    for op in ops.keys() {
                        if !matches!(op.as_str(), "+gt" | "+gte" | "+lt" | "+lte" | "+contains" | "+neq") {
                            return Err(format!("Unknown operator {op}"));
                        }
                    }
                }
            }
        }
    }
    Ok(())
}

fn field_of<'a>(item: &'a Value, path: &str) -> &'a Value {
    path.split('.').fold(item, |v, k| v.get(k).unwrap_or(&Value::Null))
}

fn compare(a: &Value, b: &Value) -> Option<Ordering> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64()?.partial_cmp(&y.as_f64()?),
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        (Value::Bool(x), Value::Bool(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

fn equal(field: &Value, want: &Value) -> bool {
    match field {
        Value::Array(items) => items.iter().any(|i| i == want),
        other => other == want,
    }
}

fn matches(filter: &Value, item: &Value) -> bool {
    let Value::Object(map) = filter else { return true };
    map.iter().all(|(k, v)| match k.as_str() {
        "+and" => v.as_array().is_none_or(|all| all.iter().all(|f| matches(f, item))),
        "+or" => v.as_array().is_none_or(|any| any.iter().any(|f| matches(f, item))),
        "+order_by" | "+order" => true,
        field => {
            let value = field_of(item, field);
            match v {
                Value::Object(ops) => ops.iter().all(|(op, arg)| match op.as_str() {
                    "+gt" => compare(value, arg) == Some(Ordering::Greater),
                    "+gte" => matches!(compare(value, arg), Some(Ordering::Greater | Ordering::Equal)),
                    "+lt" => compare(value, arg) == Some(Ordering::Less),
                    "+lte" => matches!(compare(value, arg), Some(Ordering::Less | Ordering::Equal)),
                    "+neq" => !equal(value, arg),
                    "+contains" => match (value, arg) {
                        (Value::String(s), Value::String(a)) => s.contains(a.as_str()),
                        (Value::Array(items), a) => items.iter().any(|i| i == a),
                        _ => false,
                    },
                    _ => false,
                }),
                want => equal(value, want),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn filters() {
        let fields = ["label", "tags", "created", "entity.id"];
        let f = Filter::parse(r#"{"+or":[{"label":"a"},{"tags":"x"}]}"#, &fields).unwrap();
        assert!(f.matches(&json!({"label":"a","tags":[]})));
        assert!(f.matches(&json!({"label":"b","tags":["x"]})));
        assert!(!f.matches(&json!({"label":"b","tags":["y"]})));
        let f = Filter::parse(r#"{"created":{"+gte":"2026-01-02T00:00:00"},"entity.id":5}"#, &fields).unwrap();
        assert!(f.matches(&json!({"created":"2026-01-02T00:00:00","entity":{"id":5}})));
        assert!(!f.matches(&json!({"created":"2026-01-01T23:59:59","entity":{"id":5}})));
        assert_eq!(Filter::parse(r#"{"secret":1}"#, &fields).err().unwrap(), "Cannot filter on secret");
        assert!(Filter::parse("not json", &fields).is_err());
    }
}
