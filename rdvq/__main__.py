from rdvq.app.main import console

console()
