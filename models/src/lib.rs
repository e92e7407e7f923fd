//! Vigil detection models: features, baselines, scoring, explanations, evaluation metrics. Pure.
