"""The BentoML service (`service.service:EmotionClassifier`).

pandas (which Gradio imports) imports pyarrow wherever it is installed: 34 MiB resident in every
server process. The serving install has pyarrow only because openSMILE's Python package depends on
it (through audformat), and the service calls openSMILE's library without that package
(`pipeline.functionals`); so pyarrow is marked absent here, before anything imports pandas, unless
something imported it already.
"""

import sys

sys.modules.setdefault("pyarrow", None)
