//! The history as the dashboard and `status --history` show it: the JSON view and its text
//! table (`view`), the page's SVG timeline (`timeline`) and the HTTP handlers (`api`). The
//! store and its recorder live in `crate::history`, below the dashboard.

pub mod api;
pub mod timeline;
pub mod view;
