//! Vigil appliance: ingest, enrollment CA, storage, detection pipeline, alerts, evidence, audit.
