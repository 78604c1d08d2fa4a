-- Documents, their pages and passages, and full-text search over the passages.
CREATE EXTENSION IF NOT EXISTS vector;

CREATE TABLE folio_settings (
    key text PRIMARY KEY,
    value jsonb NOT NULL
);

CREATE TABLE documents (
    doc_id text PRIMARY KEY,
    path text NOT NULL,
    content_hash text NOT NULL,
    pages integer NOT NULL,
    bytes bigint NOT NULL,
    meta jsonb NOT NULL DEFAULT '{}',
    indexed_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE pages (
    doc_id text NOT NULL REFERENCES documents ON DELETE CASCADE,
    page integer NOT NULL,
    text text NOT NULL,
    PRIMARY KEY (doc_id, page)
);

CREATE TABLE passages (
    id bigserial PRIMARY KEY,
    doc_id text NOT NULL REFERENCES documents ON DELETE CASCADE,
    page integer NOT NULL,
    char_start integer NOT NULL,
    char_end integer NOT NULL,
    text text NOT NULL,
    boxes jsonb NOT NULL DEFAULT '[]',
    tsv tsvector GENERATED ALWAYS AS (to_tsvector('english', text)) STORED
);

CREATE INDEX passages_by_doc ON passages (doc_id, page);
CREATE INDEX passages_tsv ON passages USING gin (tsv);
