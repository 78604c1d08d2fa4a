-- Page images (PNG) and their thumbnails, written with their document in one transaction.
-- kind: 0 the page as rendered for indexing, 1 the thumbnail.
CREATE TABLE page_images (
    doc_id text NOT NULL REFERENCES documents ON DELETE CASCADE,
    page integer NOT NULL,
    kind smallint NOT NULL CHECK (kind IN (0, 1)),
    png bytea NOT NULL,
    PRIMARY KEY (doc_id, page, kind)
);
-- PNG is compressed already: store it out of line without trying to compress it again.
ALTER TABLE page_images ALTER COLUMN png SET STORAGE EXTERNAL;
