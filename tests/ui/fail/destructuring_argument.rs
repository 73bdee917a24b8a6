use factum::prelude::*;

#[aggregate]
#[derive(Debug, Clone, Default)]
pub struct Point {
    pub id: String,
    pub x: i64,
    pub y: i64,
}

#[aggregate]
impl Point {
    #[event("moved")]
    pub fn move_by(&mut self, (dx, dy): (i64, i64)) {
        self.x += dx;
        self.y += dy;
    }
}

fn main() {}
