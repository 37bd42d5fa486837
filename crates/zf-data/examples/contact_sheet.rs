//! Draws a contact sheet of the generated data set (for looking at it): `cargo run -p zf-data
//! --example contact_sheet -- OUT.png [SEED] [COUNT]`.

use zf_data::{Dataset, Generated, GeneratedConfig};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let out = args.get(1).map(String::as_str).unwrap_or("contact_sheet.png");
    let seed = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(0);
    let count: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(30);
    let g = Generated::new(GeneratedConfig { seed, len: count, ..Default::default() });
    let cols = 10;
    let rows = count.div_ceil(cols);
    let mut sheet = image::RgbImage::new(cols as u32 * 128, rows as u32 * 128);
    for i in 0..g.len() {
        let (img, ann) = g.render(i);
        let mut img = img;
        for [x, y] in ann.parts.values() {
            for d in -3i32..=3 {
                for (px, py) in [(*x as i32 + d, *y as i32), (*x as i32, *y as i32 + d)] {
                    if (0..256).contains(&px) && (0..256).contains(&py) {
                        img.put_pixel(px as u32, py as u32, image::Rgb([255, 0, 0]));
                    }
                }
            }
        }
        let small = image::imageops::resize(&img, 128, 128, image::imageops::FilterType::Triangle);
        image::imageops::replace(&mut sheet, &small, (i % cols) as i64 * 128, (i / cols) as i64 * 128);
    }
    sheet.save(out)?;
    Ok(())
}
