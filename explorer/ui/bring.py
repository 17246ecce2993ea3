"""What the uploader tells people about bringing their own model: the export snippets and what each format
can carry. Text only; README.md says the same for the command line."""

PYTORCH = """```python
model.eval()
x = torch.rand(1, 1, 28, 28)  # one input like yours: (1, C, H, W), pixels in [0, 1]
torch.onnx.export(model.encoder, (x,), "encoder.onnx", input_names=["x"], output_names=["z"],
                  dynamic_axes={"x": {0: "batch"}, "z": {0: "batch"}}, external_data=False)
torch.onnx.export(model.decoder, (model.encoder(x),), "decoder.onnx", input_names=["z"],
                  output_names=["x_hat"], dynamic_axes={"z": {0: "batch"}, "x_hat": {0: "batch"}},
                  external_data=False)  # the weights inside each file: nothing else is read
```
A VAE's encoder returns two outputs: name them `output_names=["mu", "logvar"]`."""

KERAS = """```python
autoencoder.save("autoencoder.keras")  # read as it is: Dense, Conv2D(Transpose), pooling, upsampling, ...
# any other layer: export the two halves as ONNX (Keras 3)
encoder.export("encoder.onnx", format="onnx")
decoder.export("decoder.onnx", format="onnx")
```"""

FORMATS = """\
| format | carries | worked out from your images |
|---|---|---|
| ONNX encoder + decoder | the whole computation, any architecture, shapes | the pixel range ([0, 1] or [-1, 1]) and whether the decoder already ends in a sigmoid |
| Keras `.keras` | layers, activations, shapes | the pixel range |
| PyTorch `state_dict` (`.pt`) | weights and their names only: MLPs | hidden, latent and output activations, pixel range |
| this explorer's `.safetensors` | everything | nothing |

What is worked out is tried on sample images and the choice with the lowest reconstruction error is
kept; you can override every choice below before you import."""
