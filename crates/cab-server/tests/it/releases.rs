//! Release plans through the API: the plan, its revisions, the go/no-go and the phases.
