use factum::prelude::*;
use serde_json::Value;

pub struct Migrations;

impl Migrations {
    #[upcast("incremented", from = 1)]
    pub fn incremented_v1(payload: Value) -> Result<Value, UpcastError> {
        Ok(payload)
    }
}

fn main() {}
