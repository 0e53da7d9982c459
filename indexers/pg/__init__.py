"""The PostgreSQL + pgvector collection (extra ``pg``): documents, vectors and filters in the database."""
