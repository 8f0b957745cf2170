# The MLflow tracking server: MLflow's own image, pinned to the MLflow the project pins,
# plus the PostgreSQL driver and boto3 it lacks (backend store and S3 artifact store).
#   docker build -f infra/mlflow.Dockerfile -t REGISTRY/vaestudy-mlflow:3.17.2 infra
FROM ghcr.io/mlflow/mlflow:v3.17.2
# Flask-WTF: the basic-auth app (`mlflow server --app-name basic-auth`, mlflow[auth]).
RUN pip install --no-cache-dir psycopg2-binary==2.9.13 boto3==1.44.5 Flask-WTF==1.3.0
# The server starts no job runner (nothing here uses MLflow jobs; it doubles the memory).
ENV MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false \
    MLFLOW_DISABLE_TELEMETRY=true
