#!/usr/bin/env bash
# Separate roles and databases for Airflow's metadata and the LA store: Airflow's workers never
# need the LA store's owner rights, and the LA store never needs Airflow's.
set -euo pipefail
psql -v ON_ERROR_STOP=1 --username postgres <<SQL
CREATE ROLE airflow LOGIN PASSWORD '${AIRFLOW_DB_PASSWORD}';
CREATE DATABASE airflow OWNER airflow;
CREATE ROLE cme LOGIN PASSWORD '${CME_DB_PASSWORD}';
CREATE DATABASE cme OWNER cme;
SQL
