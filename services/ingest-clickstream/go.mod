module github.com/ecomstream/platform/services/ingest-clickstream

go 1.26
