module connlife/workloads/client

go 1.19
