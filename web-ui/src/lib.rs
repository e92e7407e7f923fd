//! Vigil web console: Leptos SSR pages served by axum inside the appliance.
