"""Score customers on Apache Spark with a registered model: the nightly job's rules, on a cluster.

    spark-submit jobs/spark_score.py --model models/default/v3 --input s3a://lake/customers/ --output s3a://out/run1
    python jobs/spark_score.py --model models/default/v3 --input customers.parquet --output out/run1  # local[*]

The model is verified (card and ONNX sha256) before Spark starts: a tampered
one exits 78. Exit codes like the CLI: 2 usage, 65 bad input, 66 missing
input, 78 model. Needs the extra: pip install 'mallscore[spark]'.
See mallscore/spark_job.py and the README's "Beyond one machine".
"""

import sys

from mallscore.spark_job import main

if __name__ == "__main__":
    sys.exit(main())
