module github.com/ecomstream/platform/services/validator

go 1.26
