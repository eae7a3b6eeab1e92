module github.com/ecomstream/platform/proto

go 1.26
