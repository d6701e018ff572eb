//! Embeds sentences with a model folder and prints their cosine similarities.
//!
//! usage: embed [MODEL_DIR] [SENTENCE...]
//!   MODEL_DIR   a sentence-transformers folder (default models/all-MiniLM-L6-v2)
//!   SENTENCE    texts to embed (default: three examples)

fn main() -> Result<(), rinfer::Error> {
    let mut args = std::env::args().skip(1);
    let dir = args
        .next()
        .unwrap_or_else(|| "models/all-MiniLM-L6-v2".into());
    let mut texts: Vec<String> = args.collect();
    if texts.is_empty() {
        texts = [
            "The cat sits on the mat.",
            "A cat is resting on a rug.",
            "Stock prices fell sharply.",
        ]
        .map(String::from)
        .to_vec();
    }
    let model = rinfer::Embedder::load(&dir)?;
    let vectors = model.encode(&texts)?;
    println!(
        "{} vectors of dimension {}",
        vectors.nrows(),
        vectors.ncols()
    );
    for (i, a) in vectors.rows().into_iter().enumerate() {
        for (j, b) in vectors.rows().into_iter().enumerate().skip(i + 1) {
            println!(
                "cos({i}, {j}) = {:.4}   {:?} / {:?}",
                a.dot(&b),
                texts[i],
                texts[j]
            );
        }
    }
    Ok(())
}
