"""Training data: validation before tokenization, batched tokenization with exact masks, and SmolTalk2 mixtures.

```python
from trl_smol.data import prepare_conversations, smoltalk2_mixture, smoltalk2_train, tokenize_conversations
```
"""

from .input_files import DataFileError, check_local_data_files
from .mixtures import SmolDatasetMixtureConfig, get_dataset, smoltalk2_mixture
from .smoltalk2 import MissingSplitError, smoltalk2_train
from .tokenization import RowCutToNothingError, can_tokenize_fast, tokenize_conversations
from .validation import InvalidConversationError, check_conversation, prepare_conversations

__all__ = [
    "DataFileError",
    "InvalidConversationError",
    "MissingSplitError",
    "RowCutToNothingError",
    "SmolDatasetMixtureConfig",
    "can_tokenize_fast",
    "check_conversation",
    "check_local_data_files",
    "get_dataset",
    "prepare_conversations",
    "smoltalk2_mixture",
    "smoltalk2_train",
    "tokenize_conversations",
]
