-- Every route's model is recorded as a RouteModel under model.<route>; the page-image routes
-- get their tables (their vector columns are added at the model's width when the collection
-- is first given a model); documents are found by content hash.
INSERT INTO folio_settings (key, value)
SELECT 'model.text', jsonb_build_object('embedder', value, 'source', NULL)
FROM folio_settings WHERE key = 'embedder';
DELETE FROM folio_settings WHERE key = 'embedder';

CREATE INDEX documents_by_hash ON documents (content_hash);
CREATE INDEX documents_by_path ON documents (path);

-- One vector per page image (the page route).
CREATE TABLE page_vectors (
    doc_id text NOT NULL REFERENCES documents ON DELETE CASCADE,
    page integer NOT NULL,
    PRIMARY KEY (doc_id, page)
);

-- Token vectors per page image (late interaction): little-endian f16 rows, re-scored by
-- MaxSim in Folio; each page's token centroids pick the candidates.
CREATE TABLE late_pages (
    doc_id text NOT NULL REFERENCES documents ON DELETE CASCADE,
    page integer NOT NULL,
    tokens bytea NOT NULL,
    PRIMARY KEY (doc_id, page)
);

CREATE TABLE late_centroids (
    doc_id text NOT NULL,
    page integer NOT NULL,
    FOREIGN KEY (doc_id, page) REFERENCES late_pages ON DELETE CASCADE
);
CREATE INDEX late_centroids_by_page ON late_centroids (doc_id, page);
