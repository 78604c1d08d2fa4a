"""Writes tiny Parquet fixtures with the on-disk layouts of ViDoRe (v1 QA table, v2 BEIR
corpus/queries/qrels), MMDocIR (pages parquet + annotations jsonl) and M2KR (per-task data and
passages parquet, images by path) under datasets/tests/fixtures/parquet/.

Run with scripts/reference/.venv-parquet/bin/python (see setup-parquet-venv.sh). Deterministic:
fixed content, pure-Python PNGs (zlib + struct), Snappy compression (pyarrow's and HF datasets'
default), no created_by variance beyond the pinned pyarrow version. Schemas and their sources are
documented in scripts/reference/README.md.
"""
import json
import os
import struct
import zlib

import pyarrow as pa
import pyarrow.parquet as pq

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
OUT = os.path.normpath(os.path.join(ROOT, "datasets", "tests", "fixtures", "parquet"))

# HF `Image()` feature as stored in Parquet.
IMAGE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])


def png(seed: int, size: int = 8) -> bytes:
    """A tiny, valid RGB PNG whose pixels depend on `seed` (so every page differs)."""
    rows = b""
    for y in range(size):
        row = bytearray([0])  # filter type 0
        for x in range(size):
            row += bytes(((seed * 53 + x * 29) % 256, (seed * 97 + y * 31) % 256, (seed * 11 + (x ^ y) * 17) % 256))
        rows += bytes(row)

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(rows, 9)) + chunk(b"IEND", b"")


def hf_meta(features: dict) -> dict:
    """Schema metadata `datasets` writes into every Parquet file it produces."""
    return {b"huggingface": json.dumps({"info": {"features": features}}, separators=(",", ":")).encode()}


def write(table: pa.Table, *parts: str) -> None:
    path = os.path.join(OUT, *parts)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    pq.write_table(table, path, compression="snappy", store_schema=True)


def s(name):
    return {"dtype": name, "_type": "Value"}


IMG_FEAT = {"_type": "Image"}


def vidore_v1() -> None:
    # Layout of vidore/syntheticDocQA_*_test, shiftproject_test, arxivqa_test_subsampled-style sets:
    # one table; rows with a null `query` are distractor pages. Relevance: query -> its row's image_filename.
    names = ["query", "image", "image_filename", "answer", "page", "model", "prompt", "source"]
    rows = [
        ("What was the total energy output in 2022?", "energy_report_p3.pdf", "412 TWh", "3"),
        ("Which region had the largest solar growth?", "energy_report_p7.pdf", "Southern Europe", "7"),
        ("How many wind farms were commissioned?", "wind_brief_p2.pdf", "14", "2"),
        (None, "wind_brief_p5.pdf", None, "5"),  # distractor page: no query
    ]
    cols = {n: [] for n in names}
    for i, (q, fn, a, page) in enumerate(rows):
        cols["query"].append(q)
        cols["image"].append({"bytes": png(i + 1), "path": fn.replace(".pdf", ".png")})
        cols["image_filename"].append(fn)
        cols["answer"].append(a)
        cols["page"].append(page)
        cols["model"].append(None if q is None else "claude-3-sonnet")
        cols["prompt"].append(None if q is None else "Generate a question answerable from this page.")
        cols["source"].append("pdf")
    types = {"image": IMAGE}
    schema = pa.schema([(n, types.get(n, pa.string())) for n in names],
                       metadata=hf_meta({n: (IMG_FEAT if n == "image" else s("string")) for n in names}))
    write(pa.table(cols, schema=schema), "vidore", "test.parquet")


def vidore_beir() -> None:
    # Layout of vidore/*_v2 (e.g. esg_reports_v2): configs corpus / queries / qrels, split test.
    corpus_schema = pa.schema([("corpus-id", pa.int64()), ("image", IMAGE), ("doc-id", pa.string())],
                              metadata=hf_meta({"corpus-id": s("int64"), "image": IMG_FEAT, "doc-id": s("string")}))
    docs = ["esg_a", "esg_a", "esg_b", "esg_b"]
    corpus = pa.table({
        "corpus-id": [0, 1, 2, 3],
        "image": [{"bytes": png(10 + i), "path": f"{i}.png"} for i in range(4)],
        "doc-id": docs,
    }, schema=corpus_schema)
    q_schema = pa.schema([("query-id", pa.int64()), ("query", pa.string()), ("gpt-4o-reasoning", pa.string())],
                         metadata=hf_meta({"query-id": s("int64"), "query": s("string"),
                                           "gpt-4o-reasoning": s("string")}))
    queries = pa.table({
        "query-id": [0, 1, 2],
        "query": ["What are scope 1 emissions in 2023?", "How is water usage reported?",
                  "Which board committee oversees climate risk?"],
        "gpt-4o-reasoning": ["Pages with emissions tables.", "Water section.", "Governance section."],
    }, schema=q_schema)
    qr_schema = pa.schema([("query-id", pa.int64()), ("corpus-id", pa.int64()), ("is-answerable", pa.string()),
                           ("answer", pa.string()), ("score", pa.int64())],
                          metadata=hf_meta({"query-id": s("int64"), "corpus-id": s("int64"),
                                            "is-answerable": s("string"), "answer": s("string"),
                                            "score": s("int64")}))
    # Query 0 has two relevant pages (graded 2 and 1); corpus-id 3 is relevant to nothing.
    qrels = pa.table({
        "query-id": [0, 0, 1, 2],
        "corpus-id": [0, 1, 2, 2],
        "is-answerable": ["fully answerable", "partially answerable", "fully answerable", "fully answerable"],
        "answer": ["12,400 tCO2e", "12.4 kt", "Per site, in m3", "The Risk Committee"],
        "score": [2, 1, 2, 2],
    }, schema=qr_schema)
    write(corpus, "vidore-beir", "corpus.parquet")
    write(queries, "vidore-beir", "queries.parquet")
    write(qrels, "vidore-beir", "qrels.parquet")


def mmdocir() -> None:
    # MMDocIR_pages.parquet (one row per page, documents contiguous) + MMDocIR_annotations.jsonl.
    # page_indices = [first_row, last_row] (inclusive) into the pages parquet; questions[].page_id are
    # 0-based page numbers within the document (== passage_id, stored as a string in the parquet).
    docs = [("report_alpha.pdf", "Research report / Introduction", 3), ("slides_beta.pdf", "Tutorial/Workshop", 2)]
    cols = {k: [] for k in ["doc_name", "domain", "passage_id", "image_path", "image_binary", "ocr_text", "vlm_text"]}
    n = 0
    for doc, domain, pages in docs:
        for p in range(pages):
            cols["doc_name"].append(doc)
            cols["domain"].append(domain)
            cols["passage_id"].append(str(p))
            cols["image_path"].append(f"page_images/{doc[:-4]}_{p}.png")
            cols["image_binary"].append(png(20 + n))
            cols["ocr_text"].append(f"{doc} page {p + 1} OCR text.")
            cols["vlm_text"].append(f"The page {p + 1} of {doc} shows a chart and a paragraph.")
            n += 1
    schema = pa.schema([(k, pa.binary() if k == "image_binary" else pa.string()) for k in cols])
    write(pa.table(cols, schema=schema), "mmdocir", "MMDocIR_pages.parquet")
    ann = [
        {"doc_name": "report_alpha.pdf", "domain": "Research report / Introduction", "page_indices": [0, 2],
         "layout_indices": [0, 5], "questions": [
             {"Q": "What does the chart on page 2 show?", "A": "Revenue by year", "page_id": [1],
              "type": "['Chart']", "layout_mapping": [{"page": 1, "page_size": [612.0, 792.0], "bbox": [60, 120, 540, 400]}]},
             {"Q": "Which pages list the authors?", "A": "['page 1', 'page 3']", "page_id": [0, 2],
              "type": "['Pure-text (Plain-text)']", "layout_mapping": [
                  {"page": 0, "page_size": [612.0, 792.0], "bbox": [66, 90, 546, 130]},
                  {"page": 2, "page_size": [612.0, 792.0], "bbox": [66, 600, 546, 700]}]}]},
        {"doc_name": "slides_beta.pdf", "domain": "Tutorial/Workshop", "page_indices": [3, 4],
         "layout_indices": [6, 8], "questions": [
             {"Q": "What is the title of module 1?", "A": "Basic maps", "page_id": [1],
              "type": "['Generalized-text (Layout)']", "layout_mapping": [{"page": 1, "page_size": [720.0, 540.0], "bbox": [81, 248, 651, 406]}]}]},
    ]
    with open(os.path.join(OUT, "mmdocir", "MMDocIR_annotations.jsonl"), "w", encoding="utf-8", newline="\n") as f:
        for doc in ann:
            f.write(json.dumps(doc, ensure_ascii=False) + "\n")


def m2kr() -> None:
    # Task OKVQA: OKVQA_data/test-00000-of-00001.parquet and OKVQA_passages/test_passages-00000-of-00001.parquet.
    # Images are not in the parquet: img_path is relative to the separately downloaded image folder.
    img_dir = os.path.join(OUT, "m2kr", "images")
    os.makedirs(img_dir, exist_ok=True)
    img_names = ["COCO_val2014_000000000042.png", "COCO_val2014_000000000073.png"]
    for i, name in enumerate(img_names):
        with open(os.path.join(img_dir, name), "wb") as f:
            f.write(png(40 + i))
    p_names = ["language", "passage_id", "passage_content"]
    p_schema = pa.schema([(n, pa.string()) for n in p_names], metadata=hf_meta({n: s("string") for n in p_names}))
    passages = pa.table({
        "language": ["en"] * 4,
        "passage_id": ["WIKI_0", "WIKI_1", "WIKI_2", "WIKI_3"],
        "passage_content": ["title: Fire hydrant content: A fire hydrant is a connection point for firefighters.",
                            "title: Zebra content: Zebras are African equines with black-and-white stripes.",
                            "title: Giraffe content: The giraffe is the tallest living terrestrial animal.",
                            "title: Bus content: A bus is a road vehicle that carries many passengers."],
    }, schema=p_schema)
    q_fields = [("pos_item_ids", pa.list_(pa.string())), ("pos_item_contents", pa.list_(pa.string())),
                ("img_id", pa.string()), ("img_path", pa.string()), ("image_id", pa.string()),
                ("question_id", pa.string()), ("question", pa.string()), ("answers", pa.list_(pa.string())),
                ("gold_answer", pa.string()), ("instruction", pa.string())]
    seq = {"feature": s("string"), "_type": "Sequence"}
    q_feats = {n: (seq if pa.types.is_list(t) else s("string")) for n, t in q_fields}
    queries = pa.table({
        "pos_item_ids": [["WIKI_1"], ["WIKI_0", "WIKI_3"]],
        "pos_item_contents": [[passages["passage_content"][1].as_py()],
                              [passages["passage_content"][0].as_py(), passages["passage_content"][3].as_py()]],
        "img_id": ["42", "73"],
        "img_path": [f"images/{n}" for n in img_names],
        "image_id": ["42", "73"],
        "question_id": ["OKVQA_420", "OKVQA_730"],
        "question": ["What continent does this animal live on?", "What is the red object on the sidewalk for?"],
        "answers": [["africa"], ["fire", "water for fire"]],
        "gold_answer": ["africa", "fire"],
        "instruction": ["Using the provided image, obtain documents that address the subsequent question: "] * 2,
    }, schema=pa.schema(q_fields, metadata=hf_meta(q_feats)))
    write(passages, "m2kr", "OKVQA_passages", "test_passages-00000-of-00001.parquet")
    write(queries, "m2kr", "OKVQA_data", "test-00000-of-00001.parquet")


if __name__ == "__main__":
    vidore_v1()
    vidore_beir()
    mmdocir()
    m2kr()
    total = 0
    for dirpath, _, files in sorted(os.walk(OUT)):
        for name in sorted(files):
            p = os.path.join(dirpath, name)
            total += os.path.getsize(p)
            print(f"{os.path.getsize(p):7d}  {os.path.relpath(p, OUT)}")
    print(f"{total:7d}  total")
