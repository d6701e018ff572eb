//! How much a reduced-precision model departs from f32, measured by the engine: a
//! fixed probe set of texts is run through both, and the cosine between their
//! outputs (mean of the last hidden states) is summarised.

/// The probe texts: short and long, several domains and scripts. Fixed, so that
/// numbers from different runs and machines compare.
pub const PROBE_TEXTS: &[&str] = &[
    "Hello, world!",
    "The cat sits on the mat.",
    "A man is playing a guitar on stage.",
    "How do I reset my password if I no longer have access to my email?",
    "The quarterly revenue rose 12% year over year, driven by cloud services.",
    "Photosynthesis converts light energy into chemical energy stored in glucose.",
    "Please find attached the invoice for order #48213, due within 30 days.",
    "Der schnelle braune Fuchs springt über den faulen Hund.",
    "Le musée est fermé le lundi et les jours fériés.",
    "¿Dónde está la estación de tren más cercana?",
    "東京は日本の首都であり、世界有数の大都市です。",
    "机器学习模型需要大量的数据进行训练。",
    "Москва — столица России.",
    "The patient presented with a persistent cough and mild fever for three days.",
    "fn main() { println!(\"{}\", (1..=10).sum::<u32>()); }",
    "SELECT name, COUNT(*) FROM orders GROUP BY name HAVING COUNT(*) > 5;",
    "Error: connection refused (os error 111) while contacting 10.0.0.12:5432",
    "The mitochondria is the powerhouse of the cell.",
    "I absolutely loved this movie; the soundtrack was breathtaking!",
    "Terrible service. The food arrived cold and the waiter was rude.",
    "What is the capital of Australia?",
    "Canberra is the capital city of Australia.",
    "Interest rates are expected to remain unchanged until the next meeting.",
    "The court ruled that the contract was void because of misrepresentation.",
    "Mix the flour and butter, then add two eggs and a pinch of salt.",
    "The spacecraft entered orbit around Mars after a seven-month journey.",
    "Our new laptop features a 14-inch display, 32 GB of RAM and a 1 TB SSD.",
    "Shakespeare wrote Hamlet around the year 1600.",
    "To be, or not to be, that is the question.",
    "3.14159 2.71828 1.41421 1.73205",
    "!!! ??? ... ---",
    "emoji test 🚀🔥✨ with text",
    "Water boils at 100 degrees Celsius at sea level.",
    "The algorithm runs in O(n log n) time and uses O(n) extra memory.",
    "Customers can return items within 30 days with the original receipt.",
    "The football match ended in a 2-2 draw after extra time.",
    "Vaccines train the immune system to recognise a pathogen.",
    "Please keep your seatbelt fastened while the sign is on.",
    "The stock market fell sharply after the announcement of new tariffs, with \
     technology shares leading the decline as investors worried about supply \
     chains, margins and the outlook for consumer demand in the coming quarters.",
    "In the beginning of the project we collected requirements from users, then \
     designed a small prototype, measured how people used it, and iterated on the \
     interface for several weeks before writing the production version, which now \
     serves thousands of requests per second with a median latency of a few \
     milliseconds on ordinary hardware.",
    "Climate change is driving more frequent heatwaves, heavier rainfall and rising \
     sea levels; adapting infrastructure, agriculture and public health systems to \
     these changes is now a priority for governments, cities and companies alike, \
     alongside cutting the emissions that cause them.",
    "A transformer encoder maps a sequence of tokens to contextual vectors through \
     layers of self-attention and feed-forward blocks, each wrapped in a residual \
     connection and layer normalisation.",
];

/// Cosine similarity (0 when either vector is zero).
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let (mut ab, mut aa, mut bb) = (0.0f64, 0.0f64, 0.0f64);
    for (x, y) in a.iter().zip(b) {
        ab += *x as f64 * *y as f64;
        aa += *x as f64 * *x as f64;
        bb += *y as f64 * *y as f64;
    }
    if aa == 0.0 || bb == 0.0 {
        0.0
    } else {
        (ab / (aa.sqrt() * bb.sqrt())) as f32
    }
}

/// Agreement of a reduced-precision model with its f32 self on the probe set.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Quality {
    /// The lowest cosine over the probe texts.
    pub min_cosine: f32,
    /// The mean cosine.
    pub mean_cosine: f32,
    /// How many probe texts were compared.
    pub probes: usize,
}

impl Quality {
    /// Summarises the cosines of matching rows of `reference` and `candidate`
    /// (`rows x dim` each).
    pub fn compare(reference: &[f32], candidate: &[f32], dim: usize) -> Quality {
        let cos: Vec<f32> = reference
            .chunks_exact(dim.max(1))
            .zip(candidate.chunks_exact(dim.max(1)))
            .map(|(r, c)| cosine(r, c))
            .collect();
        let probes = cos.len();
        Quality {
            min_cosine: cos.iter().copied().fold(1.0f32, f32::min),
            mean_cosine: if probes == 0 {
                1.0
            } else {
                cos.iter().sum::<f32>() / probes as f32
            },
            probes,
        }
    }

    /// The default floor for `precision`: loading fails under it.
    pub fn default_floor(precision: crate::kernels::Precision) -> Option<f32> {
        match precision {
            crate::kernels::Precision::F32 => None,
            crate::kernels::Precision::Bf16 => Some(0.999),
            crate::kernels::Precision::Int8 => Some(0.99),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compare_summarises_row_cosines() {
        let r = [1.0, 0.0, 0.0, 1.0];
        let c = [1.0, 0.0, 1.0, 1.0];
        let q = Quality::compare(&r, &c, 2);
        assert_eq!(q.probes, 2);
        assert!((q.min_cosine - std::f32::consts::FRAC_1_SQRT_2).abs() < 1e-6);
        assert!((q.mean_cosine - (1.0 + std::f32::consts::FRAC_1_SQRT_2) / 2.0).abs() < 1e-6);
        assert_eq!(cosine(&[0.0, 0.0], &[1.0, 2.0]), 0.0);
    }
}
