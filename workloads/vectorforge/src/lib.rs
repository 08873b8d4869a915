//! vectorforge: the vector database engine behind VectorCollection.
