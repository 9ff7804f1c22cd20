//! timm → torchvision name mapping.
//!
//! * timm ResNets (`resnet18/34/50`) use torchvision's names already (head `fc`).
//! * timm `resnet50d` is built here with timm's own names (`conv1.0/1/3/4/6`,
//!   `downsample.1/2`), so its files load as they are.
//! * timm `efficientnet_b0/b2` (`conv_stem`, `blocks.S.I.conv_dw`, ...) are
//!   renamed to torchvision's `features.*` by [`effnet_to_torchvision`].
//!   `tf_efficientnet_*` (TF "same" padding) is not supported.

/// Maps one timm EfficientNet (B0/B2) key to the torchvision name, `None` if
/// the key is not a timm EfficientNet key.
pub fn effnet_to_torchvision(key: &str) -> Option<String> {
    let (module, leaf) = key.rsplit_once('.')?;
    let mapped = match module {
        "conv_stem" => "features.0.0".to_string(),
        "bn1" => "features.0.1".to_string(),
        "conv_head" => "features.8.0".to_string(),
        "bn2" => "features.8.1".to_string(),
        "classifier" => "classifier.1".to_string(),
        m => {
            let rest = m.strip_prefix("blocks.")?;
            let mut parts = rest.splitn(3, '.');
            let stage: usize = parts.next()?.parse().ok()?;
            let block: usize = parts.next()?.parse().ok()?;
            let layer = parts.next()?;
            let inner = if stage == 0 {
                // DepthwiseSeparableConv: dw, se, pw (torchvision: no expand conv).
                match layer {
                    "conv_dw" => "0.0",
                    "bn1" => "0.1",
                    "se.conv_reduce" => "1.fc1",
                    "se.conv_expand" => "1.fc2",
                    "conv_pw" => "2.0",
                    "bn2" => "2.1",
                    _ => return None,
                }
            } else {
                match layer {
                    "conv_pw" => "0.0",
                    "bn1" => "0.1",
                    "conv_dw" => "1.0",
                    "bn2" => "1.1",
                    "se.conv_reduce" => "2.fc1",
                    "se.conv_expand" => "2.fc2",
                    "conv_pwl" => "3.0",
                    "bn3" => "3.1",
                    _ => return None,
                }
            };
            format!("features.{}.{block}.block.{inner}", stage + 1)
        }
    };
    Some(format!("{mapped}.{leaf}"))
}

#[cfg(test)]
mod tests {
    use super::effnet_to_torchvision as m;

    #[test]
    fn maps_timm_names() {
        assert_eq!(
            m("conv_stem.weight").as_deref(),
            Some("features.0.0.weight")
        );
        assert_eq!(
            m("bn1.running_var").as_deref(),
            Some("features.0.1.running_var")
        );
        assert_eq!(
            m("blocks.0.0.se.conv_reduce.bias").as_deref(),
            Some("features.1.0.block.1.fc1.bias")
        );
        assert_eq!(
            m("blocks.5.3.conv_pwl.weight").as_deref(),
            Some("features.6.3.block.3.0.weight")
        );
        assert_eq!(
            m("blocks.2.1.bn2.weight").as_deref(),
            Some("features.3.1.block.1.1.weight")
        );
        assert_eq!(
            m("classifier.weight").as_deref(),
            Some("classifier.1.weight")
        );
        assert_eq!(m("blocks.x.0.bn1.weight"), None);
        assert_eq!(m("something"), None);
    }
}
