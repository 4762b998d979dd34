"""Running batchlane's automation on AWS itself: the Lambda handler for the seed's SQS → SageMaker design
(``lambda_handler``) and its CloudFormation template (``template.yaml``). See docs/automation.md.

Nothing here is imported by the rest of the package; boto3 is needed only when a handler builds its clients.
"""

from pathlib import Path

TEMPLATE_PATH = Path(__file__).with_name("template.yaml")

__all__ = ["TEMPLATE_PATH"]
