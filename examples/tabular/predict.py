"""Load the exported model in plain PyTorch and in onnxruntime, and diagnose the test rows."""
import numpy as np
import onnxruntime
import torch
from safetensors.torch import load_file

from tabular_task import rows, task

x, y = rows(train=False)
model = task.build_model(task.validate_config({}))
model.load_state_dict(load_file("model.safetensors"), strict=True)
model.eval()
with torch.no_grad():
    torch_logits = model(torch.from_numpy(x)).numpy()

session = onnxruntime.InferenceSession("model.onnx")
onnx_logits = session.run(None, {session.get_inputs()[0].name: x})[0]

accuracy = float((torch_logits.argmax(1) == y).mean())
agree = bool(np.allclose(torch_logits, onnx_logits, atol=1e-4))
print(f"accuracy {accuracy:.3f} on {len(y)} test rows; onnxruntime agrees with PyTorch: {agree}")
