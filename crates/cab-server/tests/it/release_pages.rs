//! Release plans in the browser: the list, the plan form, the release page.
