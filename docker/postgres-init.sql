-- One database per example service (each keeps its own inbox and outbox).
CREATE DATABASE orders;
CREATE DATABASE inventory;
