//! modelhub-operator
