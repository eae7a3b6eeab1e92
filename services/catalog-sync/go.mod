module github.com/ecomstream/platform/services/catalog-sync

go 1.26.0

require (
	github.com/ecomstream/platform/pkg v0.0.0
	github.com/ecomstream/platform/proto v0.0.0
	github.com/ecomstream/platform/sql v0.0.0
	github.com/google/go-cmp v0.7.0
	github.com/jackc/pglogrepl v0.0.0-20251213150135-2e8d0df862c1
	github.com/jackc/pgx/v5 v5.12.0
	go.uber.org/goleak v1.3.0
	golang.org/x/sync v0.25.0
)

require (
	github.com/jackc/pgio v1.0.0 // indirect
	github.com/jackc/pgpassfile v1.0.0 // indirect
	github.com/jackc/pgservicefile v0.0.0-20240606120523-5a60cdf6a761 // indirect
	golang.org/x/text v0.42.0 // indirect
)

replace (
	github.com/ecomstream/platform/pkg => ../../pkg
	github.com/ecomstream/platform/proto => ../../proto
	github.com/ecomstream/platform/sql => ../../sql
)
