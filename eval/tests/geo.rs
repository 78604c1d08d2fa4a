//! The GEO suite's scenarios on the real product catalogs (`shared/data/geo-catalogs` beside
//! the checkout, or the directory in `FOLIO_GEO_CATALOGS`): counts, fields, queries, and
//! reproducible shuffles.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use folio_eval::geo::scenario::{CATALOG_QUERIES, Scenario, load_catalog, load_catalogs};

fn catalog_dir() -> PathBuf {
    std::env::var_os("FOLIO_GEO_CATALOGS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/geo-catalogs")
        })
}

fn load() -> anyhow::Result<Vec<Scenario>> {
    let dir = catalog_dir();
    anyhow::ensure!(
        dir.is_dir(),
        "{} is missing: set FOLIO_GEO_CATALOGS to the directory of the GEO catalogs",
        dir.display()
    );
    Ok(load_catalogs(&dir)?)
}

#[test]
fn four_catalogs_of_ten_items_give_forty_scenarios() -> anyhow::Result<()> {
    let scenarios = load()?;
    assert_eq!(scenarios.len(), 40);
    let mut by_source: BTreeMap<&str, Vec<&Scenario>> = BTreeMap::new();
    for s in &scenarios {
        by_source.entry(s.source.as_str()).or_default().push(s);
    }
    assert_eq!(
        by_source.keys().copied().collect::<Vec<_>>(),
        ["books", "cameras", "coffee_machines", "election_articles"]
    );
    let ids: HashSet<&str> = scenarios.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids.len(), 40, "scenario ids are unique");
    for (source, list) in &by_source {
        assert_eq!(list.len(), 10, "{source}");
        let query = CATALOG_QUERIES
            .iter()
            .find(|(name, _)| name == source)
            .map(|(_, q)| *q);
        for (i, s) in list.iter().enumerate() {
            assert_eq!(s.target, i, "one scenario per target, in item order");
            assert_eq!(s.id, format!("{source}/target-{i}"));
            assert_eq!(Some(s.query.as_str()), query, "{source}: the table's query");
            assert_eq!(s.candidates.len(), 10);
            assert_eq!(
                s.candidates, list[0].candidates,
                "same candidates for every target"
            );
            for c in &s.candidates {
                assert!(!c.title.trim().is_empty());
                assert_eq!(c.fields.get("Name"), Some(&c.title));
                assert!(
                    c.text.starts_with(&format!("Name: {}\n", c.title)),
                    "{}",
                    c.text
                );
                assert_eq!(c.text.lines().count(), c.fields.len());
            }
        }
    }
    Ok(())
}

#[test]
fn catalog_fields_are_rendered_in_file_order() -> anyhow::Result<()> {
    let scenarios = load_catalog(&catalog_dir().join("cameras.jsonl"))?;
    let first = &scenarios[0].candidates[0];
    assert_eq!(first.id, "cameras/0");
    assert_eq!(first.title, "Snapshot Basic");
    assert_eq!(
        first.text,
        "Name: Snapshot Basic\n\
         Description: Affordable and easy-to-use point-and-shoot camera for everyday photography.\n\
         Price: $99\n\
         Rating: 4.0\n\
         Resolution: 16 MP\n\
         Ideal For: Casual photographers"
    );
    let keys: Vec<&str> = first.fields.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "Description",
            "Ideal For",
            "Name",
            "Price",
            "Rating",
            "Resolution"
        ]
    );

    let books = load_catalog(&catalog_dir().join("books.jsonl"))?;
    let book = &books[0].candidates[0];
    assert_eq!(book.fields["Author"], "John Smith");
    assert_eq!(book.fields["Rating"], "4.5");
    let articles = load_catalog(&catalog_dir().join("election_articles.jsonl"))?;
    for c in &articles[0].candidates {
        let keys: Vec<&str> = c.fields.keys().map(String::as_str).collect();
        assert_eq!(keys, ["Candidate", "Name", "URL"]);
        assert!(c.fields["URL"].starts_with("https://"));
    }
    Ok(())
}

#[test]
fn shuffles_are_reproducible_and_reach_every_position() -> anyhow::Result<()> {
    let scenarios = load()?;
    for s in &scenarios {
        let (order, position) = s.shuffled(s.trial_seed(7, 0));
        assert_eq!(s.shuffled(s.trial_seed(7, 0)), (order.clone(), position));
        let mut sorted = order.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..s.candidates.len()).collect::<Vec<_>>());
        assert_eq!(order[position], s.target);
        // Different seeds give different orders (10! orders: a clash is a bug).
        assert_ne!(s.shuffled(s.trial_seed(7, 1)).0, order, "{}", s.id);
        assert_ne!(s.shuffled(s.trial_seed(8, 0)).0, order, "{}", s.id);
    }
    // Over 500 seeds the target lands in each of the 10 positions (each expects 50; missing
    // one has probability about 10 * 0.9^500, i.e. never).
    let s = &scenarios[0];
    let mut hits = [0usize; 10];
    let mut orders = HashSet::new();
    for trial in 0..500 {
        let (order, position) = s.shuffled(s.trial_seed(1, trial));
        hits[position] += 1;
        orders.insert(order);
    }
    assert!(hits.iter().all(|&h| h > 0), "{hits:?}");
    assert!(
        orders.len() > 490,
        "orders repeat too often: {}",
        orders.len()
    );
    // Every candidate also reaches the first slot, where position bias is strongest.
    let mut first = [0usize; 10];
    for seed in 0..500 {
        first[s.shuffled(seed).0[0]] += 1;
    }
    assert!(first.iter().all(|&h| h > 0), "{first:?}");
    Ok(())
}
